// The declaration of libFuzzer's driver lives in include/CFuzzDriver.h; this file only
// makes the folder a C target.
#include "CFuzzDriver.h"
