// Downloader implementation. The loop thread only reads: HttpClient fills buffers lent from a
// small fixed pool per fetch (k_buffers × k_buffer_bytes) straight from the TLS stream, and the
// loop checks each filled buffer (limits, the MP4 magic) and queues it to the worker thread,
// which writes it to the .part and feeds SHA-256, in order, while the loop reads the next.
// When all buffers of a fetch are queued, acquiring the next one waits for the worker to give
// one back: back-pressure that bounds memory whatever the file size. A write error on the
// worker (ENOSPC…) stops the transfer and ends the fetch transient with that error's message.
// The worker is one thread shared by every fetch of the Downloader, FIFO: concurrent
// downloads take turns buffer by buffer, and the loop never waits on the disk. The calls that
// may block for long — fsync of the file and of its directory, and re-hashing an existing
// .part prefix on resume — run on the same worker and co_await back.
// With a sidecar (store.sidecar) it is written and fsynced beside the MP4 before the rename.
#include "daemon/engine/downloader.hpp"

#include "daemon/engine/download_checks.hpp"
#include "daemon/engine/store_files.hpp"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace klingd::engine {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using provider::HttpRequest;
using provider::HttpResponse;
using provider::TransportFailure;
using namespace files;  // NOLINT: the store's file helpers
using namespace checks; // NOLINT: the CDN answer checks

constexpr int k_max_redirects = 3;
// 416/mismatched Content-Range restarts from zero; a second one in one fetch is a broken server.
constexpr int k_max_restarts = 1;
// The per-fetch buffer pool: its size is the most a fetch holds in memory (2 MiB), and a
// buffer is the unit one read fills and one worker job writes and hashes.
constexpr std::size_t k_buffers = 4;
constexpr std::size_t k_buffer_bytes = 512 * 1024;

struct Downloader::Impl
{
  Impl(provider::HttpClient& h, asio::any_io_executor e) : http(h), ex(std::move(e)) {}
  ~Impl() { pool.join(); }

  provider::HttpClient& http;
  asio::any_io_executor ex;
  asio::thread_pool pool{1};

  // Runs a blocking call on the worker thread and resumes the awaiting coroutine on its own
  // executor. A plain initiation rather than co_spawn: fewer coroutine frames, and `work`
  // must be trivially destructible anyway (see the directory fsync below).
  template <class F>
  auto offload(F fn)
  {
    return asio::async_initiate<decltype(asio::use_awaitable), void(Result<Ok>)>(
      [this](auto handler, F work) {
        asio::post(pool, [handler = std::move(handler), work = std::move(work)]() mutable {
          Result<Ok> result = Ok{};
          try {
            result = work();
          } catch (const std::exception& e) {
            result = make_error("io", e.what());
          }
          auto ex = asio::get_associated_executor(handler);
          asio::dispatch(ex, [handler = std::move(handler), result = std::move(result)]() mutable {
            std::move(handler)(std::move(result));
          });
        });
      },
      asio::use_awaitable, std::move(fn));
  }

  asio::awaitable<DownloadOutcome> fetch(DownloadTask task);
};

namespace {

// The state of one fetch, shared by the head and chunk callbacks.
struct Transfer
{
  File file;
  Sha256 sha;
  std::uint64_t have = 0; // bytes in the .part (and hashed)
  std::array<char, 8> magic{};
  std::optional<std::uint64_t> total; // full length the server announced
  // Set by a callback when it decides the outcome; otherwise the exchange's result rules.
  std::optional<DownloadOutcome> verdict;
  std::optional<std::string> redirect_to;
  bool restart = false;

  // The pipeline to the worker. Loop thread: `spare`, `queued`, `write_error`, `wake`.
  // Worker thread: `file` writes and `sha` while jobs are queued; `written`, `worker_failed`.
  // The loop touches file/sha (truncate, hex) only when drained (queued == 0).
  explicit Transfer(asio::any_io_executor ex) : wake(ex) {}
  std::vector<std::unique_ptr<char[]>> owned;
  std::vector<char*> spare;
  std::size_t queued = 0;
  std::optional<std::string> write_error;
  asio::steady_timer wake;
  std::uint64_t written = 0;
  std::uint64_t kicked = 0; // writeback started for [0, kicked) (worker thread)
  bool worker_failed = false;

  // Worker thread, after each write: once k_writeback_step more bytes are in the page cache,
  // starts their writeback (SYNC_FILE_RANGE_WRITE does not wait), so the disk writes while
  // the download goes on and the fsync at the end has only the tail left, not the whole file
  // (1 GiB: about 0.4 s here). Best effort: an error shows up at that fsync.
  void kick_writeback()
  {
    if (written - kicked >= k_writeback_step) {
      ::sync_file_range(file.fd(), static_cast<off_t>(kicked), static_cast<off_t>(written - kicked),
                        SYNC_FILE_RANGE_WRITE);
      kicked = written;
    }
  }
  static constexpr std::uint64_t k_writeback_step = 8 << 20;

  void note_magic(std::string_view data, std::uint64_t at)
  {
    for (std::size_t i = 0; i < data.size() && at + i < magic.size(); ++i) {
      magic[at + i] = data[i];
    }
  }
  bool magic_ok() const { return std::memcmp(magic.data() + 4, "ftyp", 4) == 0; }

  void decide(DownloadStatus status, std::string message, int http_status = 0)
  {
    DownloadOutcome out;
    out.status = status;
    out.message = std::move(message);
    out.http_status = http_status;
    verdict = std::move(out);
  }

  // Drops what is in the .part: a restart from byte zero.
  Result<Ok> truncate()
  {
    if (::ftruncate(file.fd(), 0) != 0) {
      return make_error("io", fmt::format("truncate .part: {}", errno_text(errno)));
    }
    sha.reset();
    have = 0;
    written = 0;
    kicked = 0;
    magic = {};
    return Ok{};
  }
};

// Reads the existing .part to rebuild the hash state and the magic bytes (worker thread).
Result<Ok> rehash_prefix(int fd, std::uint64_t size, Transfer* t)
{
  auto r = read_prefix(fd, size, [t](std::string_view piece, std::uint64_t at) {
    t->note_magic(piece, at);
    t->sha.update(piece);
  });
  if (r) {
    t->have = size;
    t->written = size;
    t->kicked = 0;
  }
  return r;
}

constexpr auto k_use_tuple = asio::as_tuple(asio::use_awaitable);

// Waits until the worker gives back a buffer (or a job finishes, for drain()).
asio::awaitable<void> wait_worker(Transfer& t)
{
  t.wake.expires_at(asio::steady_timer::time_point::max());
  co_await t.wake.async_wait(k_use_tuple);
}

// Lends a spare buffer of the fetch's pool; allocates up to k_buffers, then waits for the
// worker to finish one (back-pressure).
asio::awaitable<std::span<char>> acquire(Transfer& t)
{
  while (t.spare.empty()) {
    if (t.owned.size() < k_buffers) {
      t.owned.emplace_back(new char[k_buffer_bytes]); // not zeroed: read() fills what is used
      t.spare.push_back(t.owned.back().get());
      break;
    }
    co_await wait_worker(t);
  }
  char* buf = t.spare.back();
  t.spare.pop_back();
  co_return std::span<char>(buf, k_buffer_bytes);
}

// Until every queued buffer of the fetch is written and hashed.
asio::awaitable<void> drain(Transfer& t)
{
  while (t.queued > 0) {
    co_await wait_worker(t);
  }
}

} // namespace

asio::awaitable<DownloadOutcome> Downloader::Impl::fetch(DownloadTask task)
{
  const fs::path part = task.part_path.empty() ? fs::path(task.final_path).concat(".part") : task.part_path;
  // Both directories, opened below task.store_root without following links (open_place).
  std::optional<Place> part_place;
  std::optional<Place> final_place;
  // A transient or url_expired end keeps the .part for a Range resume, unless it is empty.
  auto transient = [&part_place](std::string message) {
    struct stat st{};
    if (part_place && ::fstatat(part_place->dir.fd(), part_place->name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode) && st.st_size == 0) {
      ::unlinkat(part_place->dir.fd(), part_place->name.c_str(), 0);
    }
    DownloadOutcome out;
    out.status = DownloadStatus::transient;
    out.message = std::move(message);
    return out;
  };
  auto fatal = [&part_place](std::string message, int http_status = 0) {
    if (part_place) {
      ::unlinkat(part_place->dir.fd(), part_place->name.c_str(), 0);
    }
    DownloadOutcome out;
    out.status = DownloadStatus::fatal;
    out.message = std::move(message);
    out.http_status = http_status;
    return out;
  };
  auto failed = [&](const Error& e) {
    return e.code == k_confined ? fatal(e.message) : transient(e.message);
  };

  std::string url = task.url;
  if (auto refused = refuse_url(url, task.allow_http, false)) {
    // Drop a previous attempt's .part, if its directory is there.
    if (auto found = open_place(task.store_root, part, false)) {
      part_place = std::move(*found);
    }
    co_return fatal(*refused);
  }

  {
    auto p = open_place(task.store_root, part, true);
    if (!p) {
      co_return failed(p.error());
    }
    part_place = std::move(*p);
    auto f = open_place(task.store_root, task.final_path, true);
    if (!f) {
      co_return failed(f.error());
    }
    final_place = std::move(*f);
  }
  for (auto* place : {&*part_place, &*final_place}) {
    if (place->grew.empty()) {
      continue;
    }
    // Before anything is written: the new directories exist whatever later attempts do.
    const std::vector<File>* dirs = &place->grew;
    auto grown = co_await offload([dirs] { return fsync_dirs(dirs); });
    if (!grown) {
      co_return transient(grown.error().message);
    }
    place->grew.clear();
  }
  // Shared with the worker's jobs: they keep it alive whatever happens to this frame.
  auto transfer = std::make_shared<Transfer>(ex);
  Transfer& t = *transfer;
  {
    // O_APPEND: every write lands at the end, also after ftruncate(0) on a restart.
    auto opened = open_part(*part_place, part);
    if (!opened) {
      co_return failed(opened.error());
    }
    t.file = std::move(*opened);
  }

  // An existing .part is a previous attempt's prefix: hash it again and continue after it,
  // unless it already breaks a limit.
  struct stat st{};
  if (::fstat(t.file.fd(), &st) != 0) {
    co_return transient(fmt::format("stat {}: {}", part.string(), errno_text(errno)));
  }
  const auto existing = static_cast<std::uint64_t>(st.st_size);
  if (existing > 0) {
    const bool too_long = existing > task.max_bytes || (task.expected_size && existing > *task.expected_size);
    Result<Ok> prefix = Ok{};
    if (!too_long) {
      const int fd = t.file.fd();
      Transfer* tp = &t;
      prefix = co_await offload([fd, existing, tp] { return rehash_prefix(fd, existing, tp); });
      if (!prefix) {
        co_return transient(prefix.error().message);
      }
    }
    if (too_long || (t.have >= 8 && !t.magic_ok())) {
      if (auto r = t.truncate(); !r) {
        co_return transient(r.error().message);
      }
    }
  }
  const bool resuming_from_start = t.have > 0;

  int redirects = 0;
  int restarts = 0;
  for (;;) {
    t.verdict.reset();
    t.redirect_to.reset();
    t.restart = false;
    t.total.reset();
    const std::uint64_t asked_from = t.have;

    HttpRequest req;
    req.method = "GET";
    req.url = url;
    req.timeout = task.timeout;
    req.idempotent = true;
    // Identity: Content-Length and Range must count the bytes of the file itself.
    req.headers.emplace_back("Accept-Encoding", "identity");
    if (asked_from > 0) {
      req.headers.emplace_back("Range", fmt::format("bytes={}-", asked_from));
    }

    int status_seen = 0;
    auto on_head = [&](const HttpResponse& head) -> bool {
      status_seen = head.status;
      const int s = head.status;
      if (is_redirect(s)) {
        auto location = head.header("Location");
        if (!location || location->empty()) {
          t.decide(DownloadStatus::fatal, fmt::format("redirect {} without Location", s), s);
          return false;
        }
        // Relative Locations resolve against the current URL.
        auto base = boost::urls::parse_uri(url);
        auto ref = boost::urls::parse_uri_reference(*location);
        boost::urls::url resolved;
        if (!base || !ref || !boost::urls::resolve(*base, *ref, resolved)) {
          t.decide(DownloadStatus::fatal, "redirect to an invalid URL", s);
          return false;
        }
        t.redirect_to = std::string(resolved.buffer());
        return false;
      }
      if (s == 403 || s == 404 || s == 410) {
        t.decide(DownloadStatus::url_expired, fmt::format("video URL answered HTTP {}", s), s);
        return false;
      }
      if (s == 408 || s == 429 || s >= 500) {
        t.decide(DownloadStatus::transient, fmt::format("video host answered HTTP {}", s), s);
        t.verdict->retry_after = parse_retry_after(head);
        return false;
      }
      if (s == 416 && asked_from > 0) {
        // "bytes */N" with N == what we have: the .part was already complete.
        auto range = head.header("Content-Range");
        auto parsed = range ? parse_content_range(*range) : std::nullopt;
        if (parsed && !parsed->first && parsed->total == asked_from) {
          t.total = asked_from;
        } else {
          t.restart = true;
        }
        return false;
      }
      if (s == 200) {
        if (asked_from > 0) {
          // The server ignored Range: what comes is the whole file.
          if (auto r = t.truncate(); !r) {
            t.decide(DownloadStatus::transient, r.error().message, s);
            return false;
          }
        }
        if (auto length = head.header("Content-Length")) {
          t.total = parse_u64(*length);
          if (!t.total) {
            t.decide(DownloadStatus::fatal, "invalid Content-Length", s);
            return false;
          }
        }
      } else if (s == 206 && asked_from > 0) {
        auto range = head.header("Content-Range");
        auto parsed = range ? parse_content_range(*range) : std::nullopt;
        if (!parsed || !parsed->first) {
          t.decide(DownloadStatus::fatal, "206 without a valid Content-Range", s);
          return false;
        }
        if (*parsed->first != asked_from) {
          t.restart = true; // a different range than asked: start over rather than splice
          return false;
        }
        t.total = parsed->total;
        if (!t.total) {
          // Unknown total: the end of this range is the end of the file.
          t.total = parsed->last + 1;
        }
      } else {
        t.decide(DownloadStatus::fatal, fmt::format("unexpected HTTP {} for the video", s), s);
        return false;
      }
      if (t.total && *t.total > task.max_bytes) {
        t.decide(DownloadStatus::fatal,
                 fmt::format("video is {} bytes, over download.max_bytes {}", *t.total, task.max_bytes), s);
        return false;
      }
      if (t.total && task.expected_size && *t.total != *task.expected_size) {
        t.decide(DownloadStatus::fatal,
                 fmt::format("video length {} differs from the reported file_size {}", *t.total,
                             *task.expected_size),
                 s);
        return false;
      }
      return true;
    };

    // Checks a filled buffer on the loop (limits, magic), then queues it to the worker.
    auto filled = [&](std::span<char> buf, std::size_t n) -> asio::awaitable<Result<Ok>> {
      auto refuse = [&](DownloadStatus status, std::string message) -> Result<Ok> {
        t.spare.push_back(buf.data());
        t.decide(status, std::move(message), status_seen);
        return make_error("refused", t.verdict->message);
      };
      if (t.write_error) { // an earlier buffer's write failed: stop reading
        co_return refuse(DownloadStatus::transient, *t.write_error);
      }
      const std::string_view piece(buf.data(), n);
      const std::uint64_t after = t.have + piece.size();
      if (after > task.max_bytes) {
        co_return refuse(DownloadStatus::fatal, fmt::format("video exceeds download.max_bytes {}", task.max_bytes));
      }
      if ((task.expected_size && after > *task.expected_size) || (t.total && after > *t.total)) {
        co_return refuse(DownloadStatus::fatal, "video longer than announced");
      }
      const bool had_magic = t.have >= 8;
      t.note_magic(piece, t.have);
      if (!had_magic && after >= 8 && !t.magic_ok()) {
        co_return refuse(DownloadStatus::fatal, "not an MP4 file (no ftyp box at offset 4)");
      }
      t.have = after;
      ++t.queued;
      asio::post(pool, [this, transfer, data = buf.data(), n] {
        Transfer& w = *transfer;
        std::optional<std::string> error;
        if (!w.worker_failed) {
          if (auto r = write_all(w.file.fd(), std::string_view(data, n)); r) {
            w.sha.update(std::string_view(data, n));
            w.written += n;
            w.kick_writeback();
          } else {
            w.worker_failed = true; // later buffers would leave a gap: written no more
            error = r.error().message;
          }
        }
        asio::post(ex, [transfer, data, error = std::move(error)]() mutable {
          Transfer& l = *transfer;
          --l.queued;
          l.spare.push_back(data);
          if (error && !l.write_error) {
            l.write_error = std::move(error);
          }
          l.wake.cancel();
        });
      });
      co_return Ok{};
    };

    provider::HttpClient::BodySink sink;
    sink.on_head = on_head;
    sink.acquire = [&t]() { return acquire(t); };
    sink.filled = filled;
    sink.release = [&t](std::span<char> buf) { t.spare.push_back(buf.data()); };
    auto result = co_await http.stream(req, std::move(sink));
    // Whatever ended the exchange: the worker finishes this fetch's buffers first, so the
    // .part, the hash and the byte count agree from here on.
    co_await drain(t);
    if (t.write_error) {
      t.have = t.written;
      if (!t.verdict || t.verdict->status != DownloadStatus::fatal) {
        t.decide(DownloadStatus::transient, *t.write_error, status_seen);
      }
    }

    if (t.verdict) {
      DownloadOutcome out = *t.verdict;
      out.bytes = t.have;
      t.file.close();
      if (out.status == DownloadStatus::fatal) {
        co_return fatal(out.message, out.http_status);
      }
      DownloadOutcome kept = transient(out.message);
      kept.status = out.status;
      kept.http_status = out.http_status;
      kept.retry_after = out.retry_after;
      kept.bytes = t.have;
      co_return kept;
    }
    if (!result) {
      DownloadOutcome out = transient(fmt::format("download from {} failed after {} bytes: {}", host_of(url),
                                                  t.have, result.error().message));
      out.bytes = t.have;
      out.http_status = status_seen;
      co_return out;
    }
    if (t.redirect_to) {
      if (++redirects > k_max_redirects) {
        t.file.close();
        co_return fatal(fmt::format("more than {} redirects", k_max_redirects), status_seen);
      }
      if (auto refused = refuse_url(*t.redirect_to, task.allow_http, true)) {
        t.file.close();
        co_return fatal(*refused, status_seen);
      }
      url = std::move(*t.redirect_to);
      continue;
    }
    if (t.restart) {
      if (++restarts > k_max_restarts) {
        t.file.close();
        co_return fatal("server keeps refusing the requested range", status_seen);
      }
      if (auto r = t.truncate(); !r) {
        co_return transient(r.error().message);
      }
      continue;
    }

    // The body is complete as far as HTTP framing goes; now the file's own checks.
    if (t.total && t.have != *t.total) {
      DownloadOutcome out = transient(fmt::format("video truncated at {} of {} bytes", t.have, *t.total));
      out.bytes = t.have;
      out.http_status = status_seen;
      co_return out;
    }
    if (task.expected_size && t.have != *task.expected_size) {
      t.file.close();
      co_return fatal(fmt::format("video length {} differs from the reported file_size {}", t.have,
                                  *task.expected_size),
                      status_seen);
    }
    if (t.have < 8 || !t.magic_ok()) {
      t.file.close();
      co_return fatal("not an MP4 file (no ftyp box at offset 4)", status_seen);
    }

    const int fd = t.file.fd();
    auto synced = co_await offload([fd] { return fsync_path_fd(fd, ".part"); });
    t.file.close();
    if (!synced) {
      co_return transient(synced.error().message);
    }
    const std::string sha_hex = t.sha.hex();
    if (task.sidecar) { // beside the MP4 before it is in place: a completed job never lacks it
      auto side = write_temp(*final_place, task.sidecar_name, task.sidecar(sha_hex, t.have));
      const int side_fd = side ? side->fd() : -1;
      Result<Ok> r = side ? Result<Ok>(Ok{}) : Result<Ok>(side.error());
      if (r) {
        r = co_await offload([side_fd] { return fsync_path_fd(side_fd, "sidecar"); });
      }
      if (r) {
        r = rename_in(*final_place, task.sidecar_name);
      }
      if (!r) {
        co_return transient(r.error().message);
      }
    }
    // renameat replaces whatever is at the final name (a planted link included) itself.
    if (::renameat(part_place->dir.fd(), part_place->name.c_str(), final_place->dir.fd(),
                   final_place->name.c_str()) != 0) {
      co_return transient(fmt::format("rename into {}: {}", task.final_path.string(), errno_text(errno)));
    }
    // The rename is durable only once the directory entry is.
    // Lambdas in a co_await expression capture only trivially destructible values: GCC 12
    // destroys such temporaries twice otherwise.
    const int dir_fd = final_place->dir.fd();
    auto dir_synced = co_await offload([dir_fd] { return fsync_path_fd(dir_fd, "directory"); });
    if (!dir_synced) {
      co_return transient(dir_synced.error().message);
    }

    DownloadOutcome out;
    out.status = DownloadStatus::ok;
    out.bytes = t.have;
    out.sha256_hex = sha_hex;
    out.http_status = status_seen;
    out.resumed = resuming_from_start && status_seen == 206;
    co_return out;
  }
}

Downloader::Downloader(provider::HttpClient& http, asio::any_io_executor ex)
  : m_impl(std::make_unique<Impl>(http, std::move(ex))) {}
Downloader::~Downloader() = default;
asio::awaitable<DownloadOutcome> Downloader::fetch(DownloadTask task)
{
  co_return co_await m_impl->fetch(std::move(task));
}

} // namespace klingd::engine
