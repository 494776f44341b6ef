// dcn-bench verify: runs fixture files through our ops.
