#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, FuzzerDriver.cpp). SwiftPM gives an executable target
/// an entry point named `<module>_main` in place of `main`, so libFuzzer's own `main` is
/// never linked; each target's entry point calls the driver itself.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
