"""The protocol the specification's "Starting a Reactor Server" example
imports (``from my_protocols import MyProtocol``): its Method 1 protocol,
which answers each read with ``Got: `` and the data."""

import erlang.reactor as reactor


class MyProtocol(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(b"Got: " + data)
        return "write_pending"
