print("dcn-bench")
