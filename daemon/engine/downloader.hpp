// Downloader: fetches one finished video into the store (docs/contract.md §3.5) — streamed to
// `<final_path>.part` with bounded memory (written and hashed on a worker thread while the
// loop reads on), resumed with Range, checked (length, MP4 `ftyp`, size cap, expected size),
// hashed while streaming, fsynced and renamed into place.
// It only classifies outcomes; the engine decides when to refresh URLs and how often to retry.
#pragma once

#include "daemon/provider/http_client.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace klingd::engine {

struct DownloadTask
{
  std::string url;
  // Parent directories are created as needed; an existing file there is replaced.
  std::filesystem::path final_path;
  // Where the partial download lives; empty: `<final_path>.part`. The engine names one per
  // generation, so a part of one generation is never resumed into another's file.
  std::filesystem::path part_path;
  // The status's video.file_size; a different length (announced or received) is fatal.
  std::optional<std::uint64_t> expected_size;
  std::uint64_t max_bytes = 0;
  // false: http:// URLs, first or redirected, are fatal.
  bool allow_http = false;
  // Deadline up to the response head; then an inactivity limit per body read.
  std::chrono::milliseconds timeout{60000};
  // The videos directory. Set: the files must lie under it, every directory below it is
  // opened without following symlinks (created ones are fsynced), and a .part that is a
  // link or not a regular file is refused — all fatal. Empty: no confinement.
  std::filesystem::path store_root;
  // Set (store.sidecar): its text, given the MP4's sha256 and size, is written to `sidecar_name`
  // in the MP4's directory (temp file, fsync, rename) just before the MP4 is renamed into place;
  // one directory fsync then makes both durable (docs/contract.md §4.6).
  std::function<std::string(const std::string& sha256, std::uint64_t bytes)> sidecar;
  std::string sidecar_name;
};

enum class DownloadStatus {
  ok,
  url_expired, // 403/404/410: get a fresh URL by polling again (.part kept)
  transient,   // network, 5xx, 408, 429, truncated, local I/O: retry later (.part kept)
  fatal,       // not MP4, too large, size mismatch, http refused, bad redirect, unexpected
               // status: the job fails download_failed (.part deleted)
};

std::string_view to_string(DownloadStatus status);

struct DownloadOutcome
{
  DownloadStatus status = DownloadStatus::transient;
  std::string message;   // never contains the URL's query (signed URLs carry secrets)
  std::uint64_t bytes = 0; // ok: file size; otherwise bytes in the .part
  std::string sha256_hex;  // ok only; lower-case hex of the whole file
  int http_status = 0;     // last HTTP status seen, 0 if none
  std::optional<std::chrono::seconds> retry_after; // from Retry-After (delta seconds)
  bool resumed = false;    // ok after continuing an existing .part with a 206
};

class Downloader
{
public:
  // `ex` is the loop's executor. Owns one worker thread, shared by all fetches, that writes
  // and hashes the body buffers the loop reads (a bounded pool per fetch), fsyncs, and
  // re-hashes a resumed .part, so that a large file never blocks the loop on the disk.
  Downloader(provider::HttpClient& http, boost::asio::any_io_executor ex);
  ~Downloader();
  Downloader(const Downloader&) = delete;
  Downloader& operator=(const Downloader&) = delete;

  // Never throws for network or HTTP trouble; local filesystem failures come back as
  // transient. Two fetches must not target the same final_path at once.
  boost::asio::awaitable<DownloadOutcome> fetch(DownloadTask task);

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace klingd::engine
