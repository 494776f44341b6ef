// OpenBLAS's CBLAS interface and LAPACKE (Debian: libopenblas-dev, liblapacke-dev).
// The include paths come from pkg-config (openblas); lapacke.h lives in /usr/include.
#include <cblas.h>
#include <lapacke.h>
