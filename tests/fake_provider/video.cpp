#include "tests/fake_provider/video.hpp"

#include "tests/fake_provider/support.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace fake {

namespace {

constexpr std::size_t k_pattern_size = 64 * 1024;

// Pseudo-random rather than zero padding, so nothing along the way can compress or
// deduplicate it into a faster-than-real download.
const std::array<char, k_pattern_size>& pattern()
{
  static const std::array<char, k_pattern_size> k_pattern = [] {
    std::array<char, k_pattern_size> p{};
    for (std::size_t i = 0; i < k_pattern_size; i += 8) {
      std::uint64_t word = mix64(0x5eed0000 + i);
      std::memcpy(p.data() + i, &word, 8);
    }
    return p;
  }();
  return k_pattern;
}

void put_be32(std::string& out, std::uint32_t v)
{
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

void put_be64(std::string& out, std::uint64_t v)
{
  for (int shift = 56; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

} // namespace

VideoLayout::VideoLayout(std::shared_ptr<const std::string> base, std::string_view generation_id,
                         std::uint64_t target_size)
  : m_base(std::move(base))
{
  std::string payload = "fake-aimlapi generation ";
  payload += generation_id;
  payload += '\n';
  put_be32(m_tail, static_cast<std::uint32_t>(payload.size() + 8));
  m_tail += "free";
  m_tail += payload;

  const std::uint64_t natural = m_base->size() + m_tail.size();
  if (target_size >= natural + 8) {
    m_pad_total = target_size - natural;
    if (m_pad_total <= 0xffffffffull) {
      put_be32(m_pad_header, static_cast<std::uint32_t>(m_pad_total));
      m_pad_header += "free";
    } else if (m_pad_total >= 16) {
      put_be32(m_pad_header, 1); // size 1: a 64-bit largesize follows the type
      m_pad_header += "free";
      put_be64(m_pad_header, m_pad_total);
    }
  }
  m_size = natural + m_pad_total;
}

void VideoLayout::read(std::uint64_t offset, char* out, std::size_t n) const
{
  const std::uint64_t base_size = m_base->size();
  const std::uint64_t pad_end = base_size + m_pad_total;
  while (n > 0) {
    std::size_t take = 0;
    if (offset < base_size) {
      take = static_cast<std::size_t>(std::min<std::uint64_t>(n, base_size - offset));
      std::memcpy(out, m_base->data() + offset, take);
    } else if (offset < pad_end) {
      std::uint64_t in_pad = offset - base_size;
      if (in_pad < m_pad_header.size()) {
        take = static_cast<std::size_t>(std::min<std::uint64_t>(n, m_pad_header.size() - in_pad));
        std::memcpy(out, m_pad_header.data() + in_pad, take);
      } else {
        std::uint64_t p = in_pad - m_pad_header.size();
        std::size_t at = static_cast<std::size_t>(p % k_pattern_size);
        take = static_cast<std::size_t>(
          std::min<std::uint64_t>({n, pad_end - offset, k_pattern_size - at}));
        std::memcpy(out, pattern().data() + at, take);
      }
    } else {
      std::uint64_t in_tail = offset - pad_end;
      take = static_cast<std::size_t>(std::min<std::uint64_t>(n, m_tail.size() - in_tail));
      std::memcpy(out, m_tail.data() + in_tail, take);
    }
    out += take;
    offset += take;
    n -= take;
  }
}

VideoHasher::~VideoHasher()
{
  for (auto& [size, prefix] : m_prefixes) {
    EVP_MD_CTX_free(prefix.ctx);
  }
}

std::optional<std::string> VideoHasher::step(const VideoLayout& layout, std::uint64_t budget)
{
  auto [it, inserted] = m_prefixes.try_emplace(layout.pad_total());
  Prefix& prefix = it->second;
  if (inserted) {
    prefix.ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(prefix.ctx, EVP_sha256(), nullptr);
  }
  std::vector<char> buf(static_cast<std::size_t>(std::min<std::uint64_t>(1 << 20, std::max<std::uint64_t>(budget, 1))));
  const std::uint64_t stop = std::min(layout.prefix_size(), prefix.done + budget);
  while (prefix.done < stop) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), stop - prefix.done));
    layout.read(prefix.done, buf.data(), n);
    EVP_DigestUpdate(prefix.ctx, buf.data(), n);
    prefix.done += n;
  }
  if (prefix.done < layout.prefix_size()) {
    return std::nullopt;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_MD_CTX_copy_ex(ctx, prefix.ctx);
  EVP_DigestUpdate(ctx, layout.tail().data(), layout.tail().size());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  return to_hex(md, len);
}

} // namespace fake
