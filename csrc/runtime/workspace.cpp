#include "workspace.hpp"

#include <cstdlib>
#include <new>

namespace fastnn {
namespace {

struct Buffer {
  void* data = nullptr;
  std::size_t size = 0;
  ~Buffer() { std::free(data); }
};

thread_local Buffer t_buffers[static_cast<int>(ScratchSlot::count)];

}  // namespace

void* thread_scratch(ScratchSlot slot, std::size_t bytes) {
  Buffer& buf = t_buffers[static_cast<int>(slot)];
  if (bytes > buf.size) {
    const std::size_t rounded = (bytes + 4095) / 4096 * 4096;
    void* fresh = std::aligned_alloc(64, rounded);
    if (fresh == nullptr) throw std::bad_alloc();
    std::free(buf.data);
    buf.data = fresh;
    buf.size = rounded;
  }
  return buf.data;
}

}  // namespace fastnn
