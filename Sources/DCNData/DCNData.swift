import DCNTensor
