#include "daemon/engine/store_files.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>

namespace klingd::engine::files {

std::string errno_text(int err)
{
  return std::error_code(err, std::system_category()).message();
}

Result<Ok> write_all(int fd, std::string_view data)
{
  while (!data.empty()) {
    const auto n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return make_error("io", fmt::format("write .part: {}", errno_text(errno)));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return Ok{};
}

Result<Ok> fsync_path_fd(int fd, const char* what)
{
  if (::fsync(fd) != 0) {
    return make_error("io", fmt::format("fsync {}: {}", what, errno_text(errno)));
  }
  return Ok{};
}

Result<Ok> read_prefix(int fd, std::uint64_t size, const std::function<void(std::string_view, std::uint64_t)>& each)
{
  std::vector<char> buf(1 << 20);
  std::uint64_t done = 0;
  while (done < size) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - done));
    const auto n = ::pread(fd, buf.data(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return make_error("io", fmt::format("read .part: {}", n < 0 ? errno_text(errno) : "short file"));
    }
    each(std::string_view(buf.data(), static_cast<std::size_t>(n)), done);
    done += static_cast<std::uint64_t>(n);
  }
  return Ok{};
}

Result<Place> open_place(const fs::path& root, const fs::path& path, bool create)
{
  Place out;
  out.name = path.filename().string();
  if (out.name.empty() || out.name == "." || out.name == "..") {
    return make_error(std::string(k_confined), fmt::format("{} names no file", path.string()));
  }
  std::error_code ec;
  if (root.empty()) {
    const auto parent = path.parent_path().empty() ? fs::path(".") : path.parent_path();
    if (create) {
      fs::create_directories(parent, ec);
      if (ec) {
        return make_error("io", fmt::format("create {}: {}", parent.string(), ec.message()));
      }
    }
    out.dir = File(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!out.dir.is_open()) {
      return make_error("io", fmt::format("open {}: {}", parent.string(), errno_text(errno)));
    }
    return out;
  }
  const auto rel = path.lexically_normal().lexically_relative(root.lexically_normal());
  if (rel.empty() || rel.is_absolute() || *rel.begin() == "..") {
    return make_error(std::string(k_confined),
                      fmt::format("{} is outside the videos directory {}", path.string(), root.string()));
  }
  if (create) {
    fs::create_directories(root, ec); // the configured root itself may be a link
    if (ec) {
      return make_error("io", fmt::format("create {}: {}", root.string(), ec.message()));
    }
  }
  File cur(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur.is_open()) {
    return make_error("io", fmt::format("open {}: {}", root.string(), errno_text(errno)));
  }
  fs::path walked = root;
  for (const auto& part : rel.parent_path()) {
    const auto name = part.string();
    if (name.empty() || name == ".") {
      continue;
    }
    walked /= part;
    if (name == "..") {
      return make_error(std::string(k_confined), fmt::format("{} climbs out of its directory", path.string()));
    }
    bool made = false;
    int fd = ::openat(cur.fd(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.fd(), name.c_str(), 0777) == 0) {
        made = true;
      } else if (errno != EEXIST) {
        return make_error("io", fmt::format("create {}: {}", walked.string(), errno_text(errno)));
      }
      fd = ::openat(cur.fd(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      const int err = errno;
      if (err == ELOOP || err == ENOTDIR) {
        return make_error(std::string(k_confined),
                          fmt::format("{} is a symlink or not a directory: refused (downloads stay inside {})",
                                      walked.string(), root.string()));
      }
      return make_error("io", fmt::format("open {}: {}", walked.string(), errno_text(err)));
    }
    File next(fd);
    if (made) {
      out.grew.push_back(std::move(cur));
    }
    cur = std::move(next);
  }
  out.dir = std::move(cur);
  return out;
}

Result<File> open_part(const Place& place, const fs::path& shown)
{
  const int flags = O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK;
  int fd = ::openat(place.dir.fd(), place.name.c_str(), flags);
  if (fd < 0 && errno == ENOENT) {
    fd = ::openat(place.dir.fd(), place.name.c_str(), flags | O_CREAT | O_EXCL, 0644);
  }
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP) {
      return make_error(std::string(k_confined), fmt::format("{} is a symlink: refused", shown.string()));
    }
    return make_error("io", fmt::format("open {}: {}", shown.string(), errno_text(err)));
  }
  File file(fd);
  struct stat st{};
  if (::fstat(fd, &st) != 0) {
    return make_error("io", fmt::format("stat {}: {}", shown.string(), errno_text(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return make_error(std::string(k_confined), fmt::format("{} is not a regular file: refused", shown.string()));
  }
  return file;
}

Result<File> write_temp(const Place& place, const std::string& name, std::string_view text)
{
  const std::string temp = name + ".tmp";
  ::unlinkat(place.dir.fd(), temp.c_str(), 0);
  File file(::openat(place.dir.fd(), temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!file.is_open()) {
    return make_error("io", fmt::format("create {}: {}", temp, errno_text(errno)));
  }
  if (auto r = write_all(file.fd(), text); !r) {
    return r.error();
  }
  return file;
}

Result<Ok> rename_in(const Place& place, const std::string& name)
{
  const std::string temp = name + ".tmp";
  if (::renameat(place.dir.fd(), temp.c_str(), place.dir.fd(), name.c_str()) != 0) {
    return make_error("io", fmt::format("rename {} into place: {}", temp, errno_text(errno)));
  }
  return Ok{};
}

Result<Ok> fsync_dirs(const std::vector<File>* dirs)
{
  for (const auto& d : *dirs) {
    if (auto r = fsync_path_fd(d.fd(), "directory"); !r) {
      return r;
    }
  }
  return Ok{};
}

} // namespace klingd::engine::files
