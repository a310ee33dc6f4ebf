"""Echo server protocol: sends back whatever it receives.

The specification's ``EchoProtocol``.  Importing this module makes it the
protocol factory of the context, so a context started with
``app_module => <<"echo_protocol">>`` (and ``examples/`` on its Python path)
echoes every connection handed to it.
"""

from __future__ import annotations

from typing import Any

import erlang.reactor as reactor


class EchoProtocol(reactor.Protocol):
    """Simple echo protocol - sends back whatever it receives."""

    def connection_made(self, fd: int, client_info: dict[Any, Any]) -> None:
        super().connection_made(fd, client_info)
        print(f"Connection from {client_info.get('addr')}:{client_info.get('port')}")

    def data_received(self, data: reactor.ReactorBuffer) -> str:
        """Echo received data back to client."""
        if not data:
            return "close"
        # Buffer the data for writing
        self.write_buffer.extend(data)
        return "write_pending"

    def write_ready(self) -> str:
        """Write buffered data."""
        if not self.write_buffer:
            return "read_pending"
        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]
        if self.write_buffer:
            return "continue"  # More data to write
        return "read_pending"  # Done, wait for more input

    def connection_lost(self) -> None:
        print(f"Connection closed: fd={self.fd}")


# Register the factory
reactor.set_protocol_factory(EchoProtocol)
