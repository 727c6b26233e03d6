// The compiled parts of Boost.Asio (with its SSL layer) and Boost.Beast, built once for the
// whole project instead of in every translation unit that includes them: with
// KLINGD_FAST_BUILD (CMakeLists.txt) every target is compiled with
// BOOST_ASIO_SEPARATE_COMPILATION and BOOST_BEAST_SEPARATE_COMPILATION, and links this file
// through the klingd_boost_impl library.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
