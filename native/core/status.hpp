// status.hpp: the one error type of the native code.
//
// Native code never exits or aborts. A failed check throws maml::Error carrying a stable code;
// the binding layer (native/binding) turns it into a JavaScript error whose `code` property the
// TypeScript side maps onto MamlError. Worker threads catch and hand errors back to the caller.
#pragma once
#include <cstdint>
#include <exception>
#include <string>

namespace maml {

enum class Code {
  InvalidArgument,
  ShapeMismatch,
  NonFinite,
  TooLarge,
  OutOfMemory,
  CorruptFile,
  NoDevice,
  CudaError,
  Unsupported,
  Busy,      // an object is running an asynchronous operation (a CUDA learner's async step)
  Disposed,  // an object whose dispose() was called
  Internal,
};

inline const char* code_name(Code c) {
  switch (c) {
    case Code::InvalidArgument: return "INVALID_ARGUMENT";
    case Code::ShapeMismatch: return "SHAPE_MISMATCH";
    case Code::NonFinite: return "NON_FINITE";
    case Code::TooLarge: return "TOO_LARGE";
    case Code::OutOfMemory: return "OUT_OF_MEMORY";
    case Code::CorruptFile: return "CORRUPT_FILE";
    case Code::NoDevice: return "NO_DEVICE";
    case Code::CudaError: return "CUDA_ERROR";
    case Code::Unsupported: return "UNSUPPORTED";
    case Code::Busy: return "BUSY";
    case Code::Disposed: return "DISPOSED";
    case Code::Internal: return "INTERNAL";
  }
  return "INTERNAL";
}

class Error : public std::exception {
 public:
  Error(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  Code code() const noexcept { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  Code code_;
  std::string message_;
};

#define MAML_STR2(x) #x
#define MAML_STR(x) MAML_STR2(x)
// Checks a condition on user-facing input; the message says what was expected.
#define MAML_CHECK(cond, code, msg)                            \
  do {                                                         \
    if (!(cond)) throw ::maml::Error(::maml::Code::code, msg); \
  } while (0)
// Checks an internal invariant; a failure is a bug, reported with file and line.
#define MAML_ASSERT(cond)                                                                         \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      throw ::maml::Error(::maml::Code::Internal,                                                 \
                          "internal check failed: " #cond " at " __FILE__ ":" MAML_STR(__LINE__)); \
  } while (0)

// a * b, or a TooLarge error when the product of two non-negative sizes overflows `limit`.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what, int64_t limit = INT64_C(1) << 53) {
  if (a < 0 || b < 0) throw Error(Code::InvalidArgument, std::string(what) + ": negative size");
  if (a != 0 && b > limit / a)
    throw Error(Code::TooLarge, std::string(what) + ": size " + std::to_string(a) + " x " +
                                    std::to_string(b) + " is too large");
  return a * b;
}

}  // namespace maml
