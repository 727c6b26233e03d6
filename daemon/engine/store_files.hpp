// Files in the video store as the downloader writes them: an fd owner, SHA-256, full writes and
// fsyncs, and confinement — directories opened one by one below the videos directory without
// following links (openat/O_NOFOLLOW), a new .part created with O_EXCL (docs/security.md).
#pragma once

#include "common/result.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <array>
#include <stdexcept>
#include <utility>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

namespace klingd::engine::files {

namespace fs = std::filesystem;

std::string errno_text(int err);

// Owns a file descriptor; closing errors are ignored (fsync already reported them).
class File
{
public:
  File() = default;
  explicit File(int fd) : m_fd(fd) {}
  ~File() { close(); }
  File(File&& other) noexcept : m_fd(std::exchange(other.m_fd, -1)) {}
  File& operator=(File&& other) noexcept
  {
    close();
    m_fd = std::exchange(other.m_fd, -1);
    return *this;
  }
  int fd() const { return m_fd; }
  bool is_open() const { return m_fd >= 0; }
  void close()
  {
    if (m_fd >= 0) {
      ::close(m_fd);
      m_fd = -1;
    }
  }

private:
  int m_fd = -1;
};

class Sha256
{
public:
  Sha256() : m_ctx(EVP_MD_CTX_new()) { reset(); }
  ~Sha256() { EVP_MD_CTX_free(m_ctx); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void reset()
  {
    if (!m_ctx || EVP_DigestInit_ex(m_ctx, EVP_sha256(), nullptr) != 1) {
      throw std::runtime_error("SHA-256 init failed");
    }
  }
  void update(std::string_view data) { EVP_DigestUpdate(m_ctx, data.data(), data.size()); }
  std::string hex()
  {
    std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
    unsigned int len = 0;
    EVP_DigestFinal_ex(m_ctx, digest.data(), &len);
    std::string out;
    for (unsigned int i = 0; i < len; ++i) {
      out += fmt::format("{:02x}", digest[i]);
    }
    return out;
  }

private:
  EVP_MD_CTX* m_ctx;
};

Result<Ok> write_all(int fd, std::string_view data);

Result<Ok> fsync_path_fd(int fd, const char* what);

// Reads the first `size` bytes of `fd` in 1 MiB pieces, each handed to `each` with its offset.
Result<Ok> read_prefix(int fd, std::uint64_t size, const std::function<void(std::string_view, std::uint64_t)>& each);

// Error code of a path that would leave the store (or goes through a link): the job fails.
inline constexpr std::string_view k_confined = "confined";

// A file's directory, opened without following links from the store root, and its name.
struct Place
{
  File dir;
  std::string name;
  // Directories this fetch created their child in: they are fsynced so the new entries last.
  std::vector<File> grew;
};

// Opens the directory of `path`. With a `root`, `path` must lie under it (lexically) and each
// directory below the root is opened with O_NOFOLLOW (created when `create`), so a symlink
// planted anywhere under the videos directory cannot send the file elsewhere. Without one,
// the parent is created and opened as named (no confinement).
Result<Place> open_place(const fs::path& root, const fs::path& path, bool create);

// Opens the .part for reading and appending: an existing one without following a link, a
// new one with O_EXCL. O_NONBLOCK: a FIFO planted there does not hang the loop.
Result<File> open_part(const Place& place, const fs::path& shown);

// Writes `text` into a new `<name>.tmp` in `place` (a stale one is removed first; O_EXCL, no link
// followed) and returns it open, not yet fsynced: the caller fsyncs it (worker thread) and then
// rename_in()s it over `name`.
Result<File> write_temp(const Place& place, const std::string& name, std::string_view text);
// Renames `<name>.tmp` over `name` in `place` (the directory still needs its fsync).
Result<Ok> rename_in(const Place& place, const std::string& name);

// Makes the entries a fetch created durable (worker thread).
Result<Ok> fsync_dirs(const std::vector<File>* dirs);

} // namespace klingd::engine::files
