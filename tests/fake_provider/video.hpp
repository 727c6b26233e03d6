// The bytes of each generation's video: the committed base MP4, an optional `free` box of
// deterministic padding (to reach --video-bytes), then a `free` box naming the generation, so
// every generation's file is a valid MP4 that differs from every other's. Content is produced
// on the fly from offsets: constant memory whatever the size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace fake {

class VideoLayout {
public:
  // `target_size` 0 (or too small to hold a padding box) gives the natural size.
  VideoLayout(std::shared_ptr<const std::string> base, std::string_view generation_id,
              std::uint64_t target_size);

  std::uint64_t size() const { return m_size; }
  // Copies bytes [offset, offset + n) of the file into `out`; the range must be inside.
  void read(std::uint64_t offset, char* out, std::size_t n) const;
  // Bytes before the generation-specific tail (identical for equal padding sizes).
  std::uint64_t prefix_size() const { return m_base->size() + m_pad_total; }
  std::uint64_t pad_total() const { return m_pad_total; }
  const std::string& tail() const { return m_tail; }

private:
  std::shared_ptr<const std::string> m_base;
  std::string m_pad_header; // 8- or 16-byte `free` box header
  std::uint64_t m_pad_total = 0; // whole padding box, header included
  std::string m_tail;
  std::uint64_t m_size = 0;
};

// SHA-256 of whole videos, computed in slices so the loop can serve other requests in
// between. Large videos share their prefix (base + padding), whose digest state is computed
// once per padding size and reused, so hashing N one-GiB videos costs about one GiB of
// hashing. Loop thread only.
class VideoHasher {
public:
  VideoHasher() = default;
  VideoHasher(const VideoHasher&) = delete;
  VideoHasher& operator=(const VideoHasher&) = delete;
  ~VideoHasher();

  // Hashes at most `budget` more prefix bytes; returns the digest once the whole video is done.
  std::optional<std::string> step(const VideoLayout& layout, std::uint64_t budget);

private:
  struct Prefix {
    EVP_MD_CTX* ctx = nullptr;
    std::uint64_t done = 0;
  };
  std::map<std::uint64_t, Prefix> m_prefixes; // by padding size
};

// Bytes hashed per slice before yielding to the loop.
inline constexpr std::uint64_t k_hash_slice = 4ull << 20;

} // namespace fake
