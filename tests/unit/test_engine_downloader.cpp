// Downloader against a scripted loopback video host: hashing, Range resume, the checks that
// make a download fatal, URL expiry, scheme and redirect policy, and .part hygiene.
#include "daemon/engine/downloader.hpp"
#include "tests/unit/http_test_server.hpp"

#include <boost/asio/io_context.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <fstream>

#include <csignal>
#include <sys/resource.h>

// GCC 12 false positive on coroutine frames with a class-specific operator new/delete
// (GCC PR 109224, fixed in 13): awaitable lambdas here trip it at -O2.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

using namespace klingd;
using namespace klingd::engine;
using namespace klingd::test_http;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t k_piece = 64 * 1024;

// Byte i of the test video: an MP4 header, then a cheap deterministic pattern, so that a
// 50 MB body never has to exist in memory on either side.
char video_byte(std::uint64_t i, bool mp4)
{
  static constexpr char header[12] = {0, 0, 0, 0x18, 'f', 't', 'y', 'p', 'm', 'p', '4', '2'};
  if (i < sizeof header) {
    return mp4 ? header[i] : "<html>hello!"[i];
  }
  return static_cast<char>((i * 2654435761u) >> 13);
}

std::string video_slice(std::uint64_t from, std::uint64_t to, bool mp4 = true)
{
  std::string out;
  out.reserve(to - from);
  for (auto i = from; i < to; ++i) {
    out.push_back(video_byte(i, mp4));
  }
  return out;
}

std::string sha256_hex(std::uint64_t size)
{
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  for (std::uint64_t at = 0; at < size; at += k_piece) {
    const auto piece = video_slice(at, std::min<std::uint64_t>(size, at + k_piece));
    EVP_DigestUpdate(ctx, piece.data(), piece.size());
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, digest, &len);
  EVP_MD_CTX_free(ctx);
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex += fmt::format("{:02x}", digest[i]);
  }
  return hex;
}

std::optional<std::uint64_t> range_start(const ServerRequest& req)
{
  auto range = req.header("Range");
  if (!range || range->rfind("bytes=", 0) != 0) {
    return std::nullopt;
  }
  return std::stoull(range->substr(6));
}

// The scripted video host. Paths:
//   /v.mp4          the video (Range honoured when `ranges`)
//   /status/NNN     answers NNN (503 with Retry-After: 7)
//   /r/relative     302 → /v.mp4
//   /r/localhost    302 → <scheme>://localhost:<port>/v.mp4 (another host name)
//   /r/http         302 → http://127.0.0.1:<port>/v.mp4
//   /r/loop         302 → /r/loop
struct VideoSite
{
  std::uint64_t size = 300 * 1024;
  bool ranges = true;
  bool mp4 = true;
  bool no_length = false;                   // body delimited by closing the connection
  std::optional<std::uint64_t> cut_after;   // one-shot: close after this many body bytes
  std::optional<std::uint64_t> claimed_length;
  std::uint16_t port = 0;
  std::string scheme = "http";
  std::vector<std::string> ranges_seen;     // "" for requests without Range
  std::uint64_t body_bytes_written = 0;

  TestServer::Handler handler()
  {
    return [this](std::shared_ptr<ServerConnection> c) -> asio::awaitable<void> {
      while (auto req = co_await c->read_request()) {
        if (!co_await answer(*c, *req)) {
          co_return;
        }
      }
    };
  }

  // false: the connection is finished.
  asio::awaitable<bool> answer(ServerConnection& c, ServerRequest req)
  {
    const std::string& target = req.target;
    if (target.rfind("/status/", 0) == 0) {
      const int status = std::stoi(target.substr(8));
      std::vector<std::pair<std::string, std::string>> headers;
      if (status == 503) {
        headers.emplace_back("Retry-After", "7");
      }
      co_return co_await c.respond(status, "nope", std::move(headers));
    }
    if (target.rfind("/r/", 0) == 0) {
      std::string location = "/v.mp4";
      if (target == "/r/localhost") {
        location = fmt::format("{}://localhost:{}/v.mp4", scheme, port);
      } else if (target == "/r/http") {
        location = fmt::format("http://127.0.0.1:{}/v.mp4", port);
      } else if (target == "/r/loop") {
        location = "/r/loop";
      }
      std::vector<std::pair<std::string, std::string>> headers;
      headers.emplace_back("Location", location);
      co_return co_await c.respond(302, "", std::move(headers));
    }
    if (target != "/v.mp4") {
      co_return co_await c.respond(404, "");
    }

    ranges_seen.push_back(req.header("Range").value_or(""));
    std::uint64_t from = 0;
    std::string head;
    const auto start = ranges ? range_start(req) : std::nullopt;
    if (start && *start >= size) {
      std::vector<std::pair<std::string, std::string>> headers;
      headers.emplace_back("Content-Range", fmt::format("bytes */{}", size));
      co_return co_await c.respond(416, "", std::move(headers));
    }
    if (start) {
      from = *start;
      head = fmt::format("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {}-{}/{}\r\n", from, size - 1, size);
    } else {
      head = "HTTP/1.1 200 OK\r\n";
    }
    head += "Content-Type: video/mp4\r\n";
    if (no_length) {
      head += "Connection: close\r\n";
    } else {
      head += fmt::format("Content-Length: {}\r\n", claimed_length.value_or(size - from));
    }
    head += "\r\n";
    if (!co_await c.write(head)) {
      co_return false;
    }
    const auto limit = cut_after ? std::min(size, from + *cut_after) : size;
    for (auto at = from; at < limit; at += k_piece) {
      const auto to = std::min<std::uint64_t>(limit, at + k_piece);
      if (!co_await c.write(video_slice(at, to, mp4))) {
        co_return false;
      }
      body_bytes_written += to - at;
    }
    if (cut_after || no_length || claimed_length) {
      cut_after.reset();
      c.close();
      co_return false;
    }
    co_return true;
  }
};

// One loop, one video host, one client and one downloader per test, in a scratch directory.
struct Fixture
{
  explicit Fixture(bool tls = false)
    : server(ctx.get_executor(), site.handler(), tls ? std::optional<CertKey>(test_pki().localhost) : std::nullopt),
      http(ctx.get_executor(), client_options()), downloader(http, ctx.get_executor())
  {
    site.port = server.port();
    site.scheme = tls ? "https" : "http";
  }

  static provider::HttpClient::Options client_options()
  {
    provider::HttpClient::Options opt;
    opt.ca_file = test_pki().ca_file.string();
    return opt;
  }

  DownloadTask task(std::string_view path, std::string_view host = "127.0.0.1")
  {
    DownloadTask t;
    t.url = server.url(path, host);
    t.final_path = dir.path() / "videos" / "batch" / "job.mp4";
    t.max_bytes = 100 << 20;
    t.allow_http = true;
    t.timeout = 5000ms;
    return t;
  }

  DownloadOutcome fetch(DownloadTask t)
  {
    DownloadOutcome out;
    run(ctx, [&]() -> asio::awaitable<void> { out = co_await downloader.fetch(t); });
    return out;
  }

  fs::path part() const { return dir.path() / "videos" / "batch" / "job.mp4.part"; }
  fs::path final_file() const { return dir.path() / "videos" / "batch" / "job.mp4"; }

  ScratchDir dir;
  asio::io_context ctx;
  VideoSite site;
  TestServer server;
  provider::HttpClient http;
  Downloader downloader;
};

std::string show(const DownloadOutcome& o)
{
  return fmt::format("{} http={} bytes={}: {}", to_string(o.status), o.http_status, o.bytes, o.message);
}

} // namespace

TEST_CASE("Downloader: full download over https with a redirect to another host; SHA-256 matches")
{
  Fixture f(true);
  auto task = f.task("/r/localhost");
  task.allow_http = false;
  task.expected_size = f.site.size;
  const auto out = f.fetch(task);
  REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
  CHECK(out.bytes == f.site.size);
  CHECK(out.sha256_hex == sha256_hex(f.site.size));
  CHECK(out.http_status == 200);
  CHECK_FALSE(out.resumed);
  CHECK(fs::file_size(f.final_file()) == f.site.size);
  CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("Downloader: a truncated body is transient, keeps the .part and resumes with Range")
{
  Fixture f;
  f.site.cut_after = 100 * 1024 + 17;
  const auto first = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(first.status == DownloadStatus::transient, show(first));
  CHECK(first.bytes == 100 * 1024 + 17);
  REQUIRE(fs::exists(f.part()));
  CHECK(fs::file_size(f.part()) == 100 * 1024 + 17);
  CHECK_FALSE(fs::exists(f.final_file()));

  const auto second = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(second.status == DownloadStatus::ok, show(second));
  CHECK(second.resumed);
  CHECK(second.http_status == 206);
  CHECK(second.sha256_hex == sha256_hex(f.site.size));
  REQUIRE(f.site.ranges_seen.size() == 2);
  CHECK(f.site.ranges_seen[0] == "");
  CHECK(f.site.ranges_seen[1] == fmt::format("bytes={}-", 100 * 1024 + 17));
  CHECK(fs::file_size(f.final_file()) == f.site.size);
  CHECK_FALSE(fs::exists(f.part()));
  // Only the missing tail travelled the second time.
  CHECK(f.site.body_bytes_written == f.site.size);
}

TEST_CASE("Downloader: a server that ignores Range (200) restarts the file from zero")
{
  Fixture f;
  f.site.ranges = false;
  f.site.cut_after = 50000;
  REQUIRE(f.fetch(f.task("/v.mp4")).status == DownloadStatus::transient);
  const auto out = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
  CHECK_FALSE(out.resumed);
  CHECK(out.sha256_hex == sha256_hex(f.site.size));
  CHECK(fs::file_size(f.final_file()) == f.site.size);
}

TEST_CASE("Downloader: 416 on a .part longer than the file restarts; 416 on a complete .part finishes")
{
  Fixture f;
  fs::create_directories(f.part().parent_path());
  SUBCASE("too long")
  {
    std::ofstream(f.part(), std::ios::binary) << video_slice(0, f.site.size + 100);
    const auto out = f.fetch(f.task("/v.mp4"));
    REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
    CHECK(out.sha256_hex == sha256_hex(f.site.size));
    CHECK(f.site.ranges_seen == std::vector<std::string>{fmt::format("bytes={}-", f.site.size + 100), ""});
  }
  SUBCASE("complete, only the rename was missing")
  {
    std::ofstream(f.part(), std::ios::binary) << video_slice(0, f.site.size);
    const auto out = f.fetch(f.task("/v.mp4"));
    REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
    CHECK(out.sha256_hex == sha256_hex(f.site.size));
    CHECK(f.site.body_bytes_written == 0);
  }
  CHECK(fs::file_size(f.final_file()) == f.site.size);
  CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("Downloader: a Content-Length that promises more than arrives is transient, then resumes")
{
  Fixture f;
  f.site.claimed_length = f.site.size + 5000; // the server sends size bytes, then closes
  const auto out = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(out.status == DownloadStatus::transient, show(out));
  CHECK(out.bytes == f.site.size);
  CHECK(fs::exists(f.part()));
  f.site.claimed_length.reset();
  // The .part already holds everything: 416 */size finishes it.
  const auto again = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(again.status == DownloadStatus::ok, show(again));
  CHECK(again.sha256_hex == sha256_hex(f.site.size));
}

TEST_CASE("Downloader: length disagreeing with the reported file_size is fatal")
{
  Fixture f;
  SUBCASE("announced")
  {
    auto task = f.task("/v.mp4");
    task.expected_size = f.site.size + 1;
    const auto out = f.fetch(task);
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(out.message.find("file_size") != std::string::npos);
  }
  SUBCASE("short body announced as complete")
  {
    f.site.claimed_length = f.site.size - 1000; // the server lies low: body ends "cleanly"
    auto task = f.task("/v.mp4");
    task.expected_size = f.site.size;
    CHECK(f.fetch(task).status == DownloadStatus::fatal);
  }
  SUBCASE("no length, longer than file_size")
  {
    f.site.no_length = true;
    auto task = f.task("/v.mp4");
    task.expected_size = f.site.size - 1000;
    CHECK(f.fetch(task).status == DownloadStatus::fatal);
  }
  CHECK_FALSE(fs::exists(f.part()));
  CHECK_FALSE(fs::exists(f.final_file()));
}

TEST_CASE("Downloader: a body that is not an MP4 is fatal as soon as its first bytes arrive")
{
  Fixture f;
  f.site.mp4 = false;
  f.site.size = 40 << 20;
  const auto out = f.fetch(f.task("/v.mp4"));
  CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
  CHECK(out.message.find("MP4") != std::string::npos);
  // Stopped early: far from the whole 40 MB left the server.
  CHECK(f.site.body_bytes_written < f.site.size / 2);
  CHECK_FALSE(fs::exists(f.part()));
  CHECK_FALSE(fs::exists(f.final_file()));
}

TEST_CASE("Downloader: more than max_bytes is fatal, announced or streamed")
{
  Fixture f;
  auto task = f.task("/v.mp4");
  task.max_bytes = f.site.size - 1;
  SUBCASE("Content-Length") {}
  SUBCASE("no length") { f.site.no_length = true; }
  const auto out = f.fetch(task);
  CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
  CHECK(out.message.find("max_bytes") != std::string::npos);
  CHECK_FALSE(fs::exists(f.part()));
  CHECK_FALSE(fs::exists(f.final_file()));
}

TEST_CASE("Downloader: 403/404/410 mean url_expired; 5xx/429 are transient with Retry-After")
{
  Fixture f;
  for (int status : {403, 404, 410}) {
    const auto out = f.fetch(f.task(fmt::format("/status/{}", status)));
    CHECK_MESSAGE(out.status == DownloadStatus::url_expired, show(out));
    CHECK(out.http_status == status);
  }
  const auto busy = f.fetch(f.task("/status/503"));
  CHECK(busy.status == DownloadStatus::transient);
  CHECK(busy.http_status == 503);
  CHECK(busy.retry_after == std::chrono::seconds(7));
  CHECK(f.fetch(f.task("/status/429")).status == DownloadStatus::transient);
  CHECK(f.fetch(f.task("/status/401")).status == DownloadStatus::fatal);
  // Nothing was received: no empty .part is left behind.
  CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("Downloader: url_expired keeps a partial .part for the fresh URL")
{
  Fixture f;
  f.site.cut_after = 70000;
  REQUIRE(f.fetch(f.task("/v.mp4")).status == DownloadStatus::transient);
  CHECK(f.fetch(f.task("/status/410")).status == DownloadStatus::url_expired);
  REQUIRE(fs::exists(f.part()));
  CHECK(fs::file_size(f.part()) == 70000);
}

TEST_CASE("Downloader: http URLs are refused unless allowed, also after a redirect")
{
  SUBCASE("direct")
  {
    Fixture f;
    auto task = f.task("/v.mp4");
    task.allow_http = false;
    const auto out = f.fetch(task);
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(f.server.connections() == 0);
    CHECK_FALSE(fs::exists(f.part()));
  }
  SUBCASE("redirect from https to http")
  {
    Fixture f(true);
    auto task = f.task("/r/http");
    task.allow_http = false;
    const auto out = f.fetch(task);
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(out.message.find("http URL refused") != std::string::npos);
    CHECK(f.site.ranges_seen.empty()); // the video itself was never requested
    CHECK_FALSE(fs::exists(f.part()));
  }
  SUBCASE("relative redirect is followed")
  {
    Fixture f;
    const auto out = f.fetch(f.task("/r/relative"));
    CHECK_MESSAGE(out.status == DownloadStatus::ok, show(out));
  }
  SUBCASE("redirect loop")
  {
    Fixture f;
    const auto out = f.fetch(f.task("/r/loop"));
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(out.message.find("redirects") != std::string::npos);
  }
}

TEST_CASE("Downloader: a network failure before any byte is transient")
{
  Fixture f;
  auto task = f.task("/v.mp4");
  task.url = fmt::format("http://127.0.0.1:{}/v.mp4", closed_port());
  const auto out = f.fetch(task);
  CHECK_MESSAGE(out.status == DownloadStatus::transient, show(out));
  CHECK_FALSE(fs::exists(f.part()));
}

TEST_CASE("Downloader: streams 50 MB with constant memory and the right SHA-256")
{
  Fixture f;
  f.site.size = 50 << 20;
  const auto out = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
  CHECK(out.bytes == f.site.size);
  CHECK(out.sha256_hex == sha256_hex(f.site.size));
  CHECK(fs::file_size(f.final_file()) == f.site.size);
}

// Byte-for-byte comparison of a stored file with the test video's first `size` bytes.
bool file_matches(const fs::path& path, std::uint64_t size)
{
  std::ifstream in(path, std::ios::binary);
  std::string got(k_piece, '\0');
  for (std::uint64_t at = 0; at < size; at += k_piece) {
    const auto n = std::min<std::uint64_t>(k_piece, size - at);
    if (!in.read(got.data(), static_cast<std::streamsize>(n)) || got.compare(0, n, video_slice(at, at + n)) != 0) {
      return false;
    }
  }
  return in.peek() == std::char_traits<char>::eof();
}

// Issue 19: the body is read into a small pool of large buffers and written + hashed on the
// worker thread. Sizes and the cut sit off every buffer boundary, the body starts in the
// buffer read_header filled, and the resumed part continues inside a buffer.
TEST_CASE("Downloader: pipelined over TLS: 9 MiB cut mid-buffer, resumed; bytes and SHA-256 match")
{
  Fixture f(true);
  f.site.size = (9 << 20) + 12345;
  f.site.cut_after = (3 << 20) + 777;
  const auto first = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(first.status == DownloadStatus::transient, show(first));
  CHECK(first.bytes == (3 << 20) + 777);
  REQUIRE(fs::exists(f.part()));
  CHECK(fs::file_size(f.part()) == (3 << 20) + 777);
  CHECK(file_matches(f.part(), (3 << 20) + 777));

  const auto second = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(second.status == DownloadStatus::ok, show(second));
  CHECK(second.resumed);
  CHECK(second.bytes == f.site.size);
  CHECK(second.sha256_hex == sha256_hex(f.site.size));
  CHECK(file_matches(f.final_file(), f.site.size));
  CHECK(f.site.body_bytes_written == f.site.size);
}

TEST_CASE("Downloader: pipelined without Content-Length (close-delimited, the parser path); SHA-256 matches")
{
  Fixture f;
  f.site.size = (5 << 20) + 3;
  f.site.no_length = true;
  const auto out = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
  CHECK(out.bytes == f.site.size);
  CHECK(out.sha256_hex == sha256_hex(f.site.size));
  CHECK(file_matches(f.final_file(), f.site.size));
}

// A write that fails on the worker thread (here EFBIG from RLIMIT_FSIZE, as ENOSPC would)
// ends the fetch transient with the write's error, the .part holding what was written.
TEST_CASE("Downloader: a write failure on the worker is transient with its message; the .part resumes")
{
  Fixture f;
  f.site.size = 6 << 20;
  const rlim_t limit = (2 << 20) + 100;
  struct rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit capped = saved;
  capped.rlim_cur = limit;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &capped) == 0);
  const auto first = f.fetch(f.task("/v.mp4"));
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  REQUIRE_MESSAGE(first.status == DownloadStatus::transient, show(first));
  CHECK(first.message.find("write .part") != std::string::npos);
  CHECK(first.message.find("File too large") != std::string::npos);
  REQUIRE(fs::exists(f.part()));
  CHECK(fs::file_size(f.part()) <= limit);
  CHECK(first.bytes <= fs::file_size(f.part()));
  CHECK_FALSE(fs::exists(f.final_file()));

  const auto second = f.fetch(f.task("/v.mp4"));
  REQUIRE_MESSAGE(second.status == DownloadStatus::ok, show(second));
  CHECK(second.sha256_hex == sha256_hex(f.site.size));
  CHECK(file_matches(f.final_file(), f.site.size));
}

// Issue 17, item 3: with store_root set, symlinks planted under the videos directory never
// send a download elsewhere, and a path that leaves the store is refused.
TEST_CASE("Downloader: confined to store_root: planted symlinks and escaping paths are fatal")
{
  Fixture f;
  const auto videos = f.dir.path() / "videos";
  const auto elsewhere = f.dir.path() / "elsewhere";
  fs::create_directories(videos);
  fs::create_directories(elsewhere);
  auto confined = [&](fs::path final_path) {
    auto t = f.task("/v.mp4");
    t.store_root = videos;
    t.final_path = std::move(final_path);
    return t;
  };

  SUBCASE("a directory that is a symlink")
  {
    fs::create_directory_symlink(elsewhere, videos / "batch");
    const auto out = f.fetch(confined(f.final_file()));
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(out.message.find("symlink") != std::string::npos);
    CHECK(fs::is_empty(elsewhere));
  }
  SUBCASE("a deeper directory that is a symlink")
  {
    fs::create_directories(videos / "a");
    fs::create_directory_symlink(elsewhere, videos / "a" / "b");
    const auto out = f.fetch(confined(videos / "a" / "b" / "c" / "job.mp4"));
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(fs::is_empty(elsewhere));
  }
  SUBCASE("a .part that is a symlink")
  {
    fs::create_directories(videos / "batch");
    const auto target = elsewhere / "victim";
    { std::ofstream(target) << "keep"; }
    fs::create_symlink(target, f.part());
    const auto out = f.fetch(confined(f.final_file()));
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(fs::file_size(target) == 4); // not appended to, not truncated
    CHECK_FALSE(fs::exists(f.final_file()));
  }
  SUBCASE("a path outside the store")
  {
    const auto out = f.fetch(confined(videos / ".." / "elsewhere" / "job.mp4"));
    CHECK_MESSAGE(out.status == DownloadStatus::fatal, show(out));
    CHECK(out.message.find("outside the videos directory") != std::string::npos);
    CHECK(fs::is_empty(elsewhere));
  }
  SUBCASE("a final file that is a symlink is replaced, not written through")
  {
    fs::create_directories(videos / "batch");
    const auto target = elsewhere / "victim";
    { std::ofstream(target) << "keep"; }
    fs::create_symlink(target, f.final_file());
    const auto out = f.fetch(confined(f.final_file()));
    REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
    CHECK_FALSE(fs::is_symlink(f.final_file()));
    CHECK(fs::file_size(f.final_file()) == f.site.size);
    CHECK(fs::file_size(target) == 4);
  }
  SUBCASE("new directories are created inside the store and the download completes")
  {
    const auto out = f.fetch(confined(videos / "x" / "y" / "job.mp4"));
    REQUIRE_MESSAGE(out.status == DownloadStatus::ok, show(out));
    CHECK(fs::file_size(videos / "x" / "y" / "job.mp4") == f.site.size);
  }
}
