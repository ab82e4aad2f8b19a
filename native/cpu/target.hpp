// target.hpp: per-instruction-set versions of a function in one portable binary.
//
// MAML_TARGET("arch=x86-64-v4") compiles a function for AVX-512 (x86-64-v3: AVX2 + FMA) and,
// with `flatten`, inlines everything it calls into it, so the whole computation is compiled
// for that instruction set; MAML_TARGET_NOINLINE keeps the function itself out of line. The
// version to run is chosen once at run time (fast.hpp's fast_level). Elsewhere (not GCC on
// x86-64 Linux) the attributes reduce to `flatten` and one portable version is compiled.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MAML_X86_LEVELS 1
#define MAML_TARGET(t) __attribute__((target(t), flatten))
#define MAML_TARGET_NOINLINE(t) __attribute__((target(t), noinline, flatten))
#else
#define MAML_X86_LEVELS 0
#define MAML_TARGET(t) __attribute__((flatten))
#define MAML_TARGET_NOINLINE(t) __attribute__((noinline, flatten))
#endif
