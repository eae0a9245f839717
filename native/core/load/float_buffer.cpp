#include "core/load/float_buffer.h"

#include <sys/mman.h>

#include <new>

namespace ep {

namespace {
constexpr size_t kMapAtLeast = size_t{2} << 20;  // one huge page
}

FloatBuffer::FloatBuffer(size_t n) : n_(n) {
  const size_t bytes = n * sizeof(float);
  if (bytes >= kMapAtLeast) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ::madvise(p, bytes, MADV_HUGEPAGE);  // advisory: ignored where transparent huge pages are off
    data_ = static_cast<float*>(p);
    mapped_ = true;
  } else {
    data_ = new float[n];  // default-initialised: no zero fill
  }
}

FloatBuffer::~FloatBuffer() {
  if (!data_) return;
  if (mapped_) ::munmap(data_, n_ * sizeof(float));
  else delete[] data_;
}

}  // namespace ep
