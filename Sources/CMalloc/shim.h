// glibc's malloc tuning (mallopt), for System.keepFreedMemoryForReuse in DCNTensor/Parallel.swift.
#pragma once
#include <malloc.h>
