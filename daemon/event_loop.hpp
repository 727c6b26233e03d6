// The daemon's event loop: an io_context that can destroy what is still queued on it —
// and so every coroutine frame still suspended there (an engine loop asleep, a create
// waiting out the shutdown grace) — while the objects those frames point into are still
// alive. Without it the frames die in ~io_context, after the engine they point into.
#pragma once

#include <boost/asio/io_context.hpp>

namespace klingd {

class EventLoop : public boost::asio::io_context
{
public:
  using boost::asio::io_context::io_context;
  // Call once run() has returned, before the engine, server and store go away. Shuts the
  // loop's services down, destroying every pending handler; the loop cannot run again.
  void destroy_pending() { shutdown(); }
};

} // namespace klingd
