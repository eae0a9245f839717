// Errors raised by the core. Every message names the file (and tensor/field where known) and the problem,
// so the CLI can print it as-is. The binding turns these into JS errors with `code` and `file` set.
#pragma once
#include <atomic>
#include <stdexcept>
#include <string>

namespace ep {

enum class ErrorCode {
  kIo,             // cannot open/read/map a file
  kFormat,         // malformed or lying header, truncated data
  kUnsupported,    // valid file, but a feature we do not handle (quantized dtype, architecture)
  kInvalidArgument,
  kCancelled,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, std::string file, const std::string& message)
      : std::runtime_error(file.empty() ? message : file + ": " + message), code_(code), file_(std::move(file)) {}
  ErrorCode code() const { return code_; }
  const std::string& file() const { return file_; }
  const char* code_name() const {
    switch (code_) {
      case ErrorCode::kIo: return "EP_IO";
      case ErrorCode::kFormat: return "EP_FORMAT";
      case ErrorCode::kUnsupported: return "EP_UNSUPPORTED";
      case ErrorCode::kInvalidArgument: return "EP_INVALID_ARGUMENT";
      case ErrorCode::kCancelled: return "EP_CANCELLED";
    }
    return "EP_ERROR";
  }

 private:
  ErrorCode code_;
  std::string file_;
};

// The check every long-running loop makes between units of work (layers, tensors, batches): a set flag
// stops the run with kCancelled, which the addon reports as EP_CANCELLED. A null flag never cancels.
inline void throw_if_cancelled(const std::atomic<bool>* cancel) {
  if (cancel && cancel->load(std::memory_order_relaxed)) throw Error(ErrorCode::kCancelled, "", "cancelled");
}

[[noreturn]] inline void fail_format(const std::string& file, const std::string& message) {
  throw Error(ErrorCode::kFormat, file, message);
}

}  // namespace ep
