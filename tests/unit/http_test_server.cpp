// See http_test_server.hpp.
#include "tests/unit/http_test_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fmt/format.h>

#include <fstream>
#include <random>
#include <stdexcept>

#include <stdlib.h>

namespace klingd::test_http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

constexpr auto k_tuple = asio::as_tuple(asio::use_awaitable);

bool iequals(std::string_view a, std::string_view b)
{
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

// ---- throwaway PKI ------------------------------------------------------------------

struct KeyCert
{
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
};

void check(bool ok, const char* what)
{
  if (!ok) {
    throw std::runtime_error(fmt::format("test PKI: {} failed", what));
  }
}

void add_ext(X509* cert, X509* issuer, int nid, const char* value)
{
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A CA when `issuer` is null (self-signed), else a server leaf with `san`.
KeyCert make_cert(const char* cn, const KeyCert* issuer, const char* san)
{
  static long serial = 1;
  KeyCert out;
  out.key = EVP_EC_gen("P-256");
  check(out.key != nullptr, "key generation");
  out.cert = X509_new();
  X509_set_version(out.cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(out.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(out.cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(out.cert), 7 * 86400);
  X509_set_pubkey(out.cert, out.key);
  X509_NAME* name = X509_get_subject_name(out.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert : out.cert;
  X509_set_issuer_name(out.cert, X509_get_subject_name(issuer_cert));
  if (!issuer) {
    add_ext(out.cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(out.cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(out.cert, issuer_cert, NID_subject_key_identifier, "hash");
  } else {
    add_ext(out.cert, issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(out.cert, issuer_cert, NID_ext_key_usage, "serverAuth");
    add_ext(out.cert, issuer_cert, NID_subject_alt_name, san);
    add_ext(out.cert, issuer_cert, NID_authority_key_identifier, "keyid");
  }
  check(X509_sign(out.cert, issuer ? issuer->key : out.key, EVP_sha256()) > 0, "sign");
  return out;
}

std::string cert_pem(X509* cert)
{
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

std::string key_pem(EVP_PKEY* key)
{
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

CertKey leaf(const char* san, const KeyCert& ca)
{
  KeyCert kc = make_cert("klingd test server", &ca, san);
  CertKey out{cert_pem(kc.cert), key_pem(kc.key)};
  X509_free(kc.cert);
  EVP_PKEY_free(kc.key);
  return out;
}

TestPki make_pki()
{
  TestPki pki;
  KeyCert good = make_cert("klingd test CA", nullptr, nullptr);
  KeyCert other = make_cert("klingd untrusted CA", nullptr, nullptr);
  pki.localhost = leaf("DNS:localhost,IP:127.0.0.1", good);
  pki.wrong_host = leaf("DNS:wrong.example", good);
  pki.unknown_ca = leaf("DNS:localhost,IP:127.0.0.1", other);

  // Lives for the whole process: removed at exit by the static below.
  static ScratchDir dir;
  pki.ca_file = dir.path() / "ca.pem";
  std::ofstream(pki.ca_file) << cert_pem(good.cert);
  for (auto* kc : {&good, &other}) {
    X509_free(kc->cert);
    EVP_PKEY_free(kc->key);
  }
  return pki;
}

} // namespace

const TestPki& test_pki()
{
  static const TestPki pki = make_pki();
  return pki;
}

ScratchDir::ScratchDir()
{
  auto pattern = (std::filesystem::temp_directory_path() / "klingd-test-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) {
    throw std::runtime_error("mkdtemp failed");
  }
  m_path = pattern;
}

ScratchDir::~ScratchDir()
{
  std::error_code ignored;
  std::filesystem::remove_all(m_path, ignored);
}

std::optional<std::string> ServerRequest::header(std::string_view name) const
{
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

// ---- ServerConnection ---------------------------------------------------------------

ServerConnection::ServerConnection(tcp::socket socket, ssl::context* tls) : m_ex(socket.get_executor())
{
  if (tls) {
    m_tls.emplace(std::move(socket), *tls);
  } else {
    m_plain.emplace(std::move(socket));
  }
}

tcp::socket& ServerConnection::socket()
{
  return m_tls ? m_tls->next_layer() : *m_plain;
}

asio::awaitable<bool> ServerConnection::start()
{
  if (!m_tls) {
    co_return true;
  }
  auto [ec] = co_await m_tls->async_handshake(ssl::stream_base::server, k_tuple);
  co_return !ec;
}

asio::awaitable<std::optional<ServerRequest>> ServerConnection::read_request()
{
  http::request_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  // if/else, not ?: — GCC 12 miscompiles co_await inside a conditional expression.
  beast::error_code ec;
  if (m_tls) {
    std::tie(ec, std::ignore) = co_await http::async_read(*m_tls, m_buffer, parser, k_tuple);
  } else {
    std::tie(ec, std::ignore) = co_await http::async_read(*m_plain, m_buffer, parser, k_tuple);
  }
  if (ec) {
    co_return std::nullopt;
  }
  auto& msg = parser.get();
  ServerRequest out;
  out.method = std::string(msg.method_string());
  out.target = std::string(msg.target());
  for (const auto& f : msg) {
    out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  }
  out.body = std::move(msg.body());
  co_return out;
}

asio::awaitable<bool> ServerConnection::write(std::string raw)
{
  beast::error_code ec;
  if (m_tls) {
    std::tie(ec, std::ignore) = co_await asio::async_write(*m_tls, asio::buffer(raw), k_tuple);
  } else {
    std::tie(ec, std::ignore) = co_await asio::async_write(*m_plain, asio::buffer(raw), k_tuple);
  }
  co_return !ec;
}

asio::awaitable<bool> ServerConnection::respond(int status, std::string body,
                                                std::vector<std::pair<std::string, std::string>> headers)
{
  co_return co_await write(raw_response(status, body, std::move(headers)));
}

asio::awaitable<void> ServerConnection::sleep(std::chrono::milliseconds d)
{
  asio::steady_timer timer(m_ex, d);
  co_await timer.async_wait(k_tuple);
}

void ServerConnection::close()
{
  boost::system::error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

void ServerConnection::reset()
{
  boost::system::error_code ignored;
  socket().set_option(asio::socket_base::linger(true, 0), ignored);
  socket().close(ignored);
}

std::string ServerConnection::sni()
{
  if (!m_tls) {
    return {};
  }
  const char* name = SSL_get_servername(m_tls->native_handle(), TLSEXT_NAMETYPE_host_name);
  return name ? name : "";
}

// ---- TestServer ---------------------------------------------------------------------

TestServer::TestServer(asio::any_io_executor ex, Handler handler, std::optional<CertKey> tls)
  : m_ex(ex), m_handler(std::move(handler)), m_acceptor(ex)
{
  if (tls) {
    m_tls = std::make_unique<ssl::context>(ssl::context::tls_server);
    m_tls->use_certificate_chain(asio::buffer(tls->cert_pem));
    m_tls->use_private_key(asio::buffer(tls->key_pem), ssl::context::pem);
  }
  tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
  m_acceptor.open(ep.protocol());
  m_acceptor.set_option(asio::socket_base::reuse_address(true));
  m_acceptor.bind(ep);
  m_acceptor.listen();
  m_port = m_acceptor.local_endpoint().port();
  asio::co_spawn(m_ex, accept_loop(), [](std::exception_ptr e) {
    if (e) {
      std::rethrow_exception(e);
    }
  });
}

TestServer::~TestServer()
{
  boost::system::error_code ignored;
  m_acceptor.close(ignored);
}

std::string TestServer::url(std::string_view path, std::string_view host) const
{
  return fmt::format("{}://{}:{}{}", m_tls ? "https" : "http", host, m_port, path);
}

asio::awaitable<void> TestServer::accept_loop()
{
  for (;;) {
    auto [ec, socket] = co_await m_acceptor.async_accept(k_tuple);
    if (ec) {
      co_return;
    }
    ++*m_connections;
    auto conn = std::make_shared<ServerConnection>(std::move(socket), m_tls.get());
    auto serve = [](std::shared_ptr<ServerConnection> c, Handler* h) -> asio::awaitable<void> {
      if (co_await c->start()) {
        co_await (*h)(c);
      }
    };
    asio::co_spawn(m_ex, serve(conn, &m_handler), [](std::exception_ptr e) {
      if (e) {
        std::rethrow_exception(e);
      }
    });
  }
}

std::uint16_t closed_port()
{
  asio::io_context ctx;
  tcp::acceptor acceptor(ctx, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

void run(asio::io_context& ctx, const std::function<asio::awaitable<void>()>& body, std::chrono::seconds limit)
{
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(ctx, body(), [&](std::exception_ptr e) {
    done = true;
    error = e;
    ctx.stop();
  });
  ctx.restart();
  ctx.run_for(limit);
  if (!done) {
    throw std::runtime_error("test body did not finish in time");
  }
  if (error) {
    std::rethrow_exception(error);
  }
}

std::string raw_response(int status, std::string_view body,
                         std::vector<std::pair<std::string, std::string>> headers)
{
  std::string out = fmt::format("HTTP/1.1 {} X\r\nContent-Length: {}\r\n", status, body.size());
  for (const auto& [k, v] : headers) {
    out += fmt::format("{}: {}\r\n", k, v);
  }
  out += "\r\n";
  out += body;
  return out;
}

} // namespace klingd::test_http
