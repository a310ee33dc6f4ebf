#!/usr/bin/env escript
%% -*- erlang -*-
%%! -noshell
%%
%% Records a real session of a small
%% keep-alive HTTP protocol with a bug, served by a py_reactor context with
%% `record' and `record_bytes', driven by real TCP clients.
%%
%% The protocol (inline setup code below, so that the recording depends on
%% no file) keys its headers by name as sent, and looks up "Host": header
%% names are case-insensitive (RFC 9110, 5.1), and a client that sends
%% `host:' makes it raise KeyError, which closes the connection without an
%% answer. examples/recordings/http_fixed.py is the same protocol, fixed.
%%
%% Run with `make example-recording' (it builds first), from the
%% repository's root or anywhere else. The recording goes to the file given
%% as the one argument, by default _build/recordings/http_bug.rec of the
%% repository (ignored by git): the committed
%% examples/recordings/http_bug.rec is replaced only when named. The
%% workflow that uses the recording is in README.md, "Reproducing a protocol
%% bug offline".

main(Args) ->
    Root = root(),
    true = code:add_patha(filename:join(Root, "_build/default/lib/py_reactor/ebin")),
    {ok, _} = application:ensure_all_started(py_reactor),
    Path = case Args of
        [Given] -> filename:absname(Given);
        [] -> filename:join([Root, "_build", "recordings", "http_bug.rec"])
    end,
    ok = filelib:ensure_dir(Path),
    _ = file:delete(Path),
    {ok, Ctx} = py_reactor_context:start_link(example, worker,
                                              #{setup_code => setup_code(),
                                                record => Path,
                                                record_bytes => true}),
    {ok, LSock} = gen_tcp:listen(0, [binary, {active, false}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(LSock),
    %% Connection 1: two requests, one after the other; the second one closes.
    C1 = connect(Ctx, LSock, Port),
    {_, open} = show(1, request(C1, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")),
    {_, closed} = show(1, request(C1, "GET /hello HTTP/1.1\r\nHost: localhost\r\n"
                                      "Connection: close\r\n\r\n")),
    %% Connection 2: two pipelined requests in one send, then a third one
    %% from a client that writes header names in lowercase.
    C2 = connect(Ctx, LSock, Port),
    {_, open} = show(2, request(C2, "GET /a HTTP/1.1\r\nHost: localhost\r\n\r\n"
                                    "GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n")),
    {<<>>, closed} = show(2, request(C2, "GET /c HTTP/1.1\r\nhost: localhost\r\n"
                                         "user-agent: lower/1.0\r\n\r\n")),
    %% The port closed connection 2 (and told the VM) before the client saw
    %% the close: the session is over. (No stats request here: its reply
    %% counts bytes and errors, which a fixed protocol changes.)
    ok = py_reactor_context:stop(Ctx),
    io:format("recorded ~ts~n", [Path]).

root() ->
    Script = filename:absname(escript:script_name()),
    filename:dirname(filename:dirname(filename:dirname(Script))).

connect(Ctx, LSock, Port) ->
    {ok, Client} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, Server} = gen_tcp:accept(LSock, 5000),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    Client.

%% Sends, then reads until the server closes or the data stops for a
%% moment: {Received, open | closed}.
request(Sock, Data) ->
    ok = gen_tcp:send(Sock, Data),
    receive_answer(Sock, <<>>, 5000).

receive_answer(Sock, Acc, Timeout) ->
    case gen_tcp:recv(Sock, 0, Timeout) of
        {ok, Data} -> receive_answer(Sock, <<Acc/binary, Data/binary>>, 300);
        {error, closed} -> {Acc, closed};
        {error, timeout} when Acc =/= <<>> -> {Acc, open}
    end.

show(Conn, {Received, State} = Answer) ->
    io:format("connection ~b: ~p, ~s~n", [Conn, Received, State]),
    Answer.

setup_code() ->
    <<"import erlang.reactor as reactor


class TinyHTTP(reactor.Protocol):
    \"\"\"HTTP/1.1, keep-alive: answers each request with the URL it asked for.\"\"\"

    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        self.pending = bytearray()
        self.closing = False

    def data_received(self, data):
        self.pending.extend(data)
        while not self.closing and b\"\\r\\n\\r\\n\" in self.pending:
            head, _, rest = bytes(self.pending).partition(b\"\\r\\n\\r\\n\")
            self.pending[:] = rest
            self.answer(head.decode(\"latin-1\"))
        return \"write_pending\" if self.write_buffer else \"continue\"

    def answer(self, head):
        request_line, *lines = head.split(\"\\r\\n\")
        method, path, _version = request_line.split(\" \")
        headers = dict(line.split(\": \", 1) for line in lines)
        url = \"http://\" + headers[\"Host\"] + path
        self.closing = headers.get(\"Connection\") == \"close\"
        body = f\"{method} {url}\\n\".encode()
        self.write_buffer.extend(b\"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\" % len(body))
        if self.closing:
            self.write_buffer.extend(b\"Connection: close\\r\\n\")
        self.write_buffer.extend(b\"\\r\\n\" + body)

    def write_ready(self):
        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]
        if self.write_buffer:
            return \"continue\"
        return \"close\" if self.closing else \"read_pending\"


reactor.set_protocol_factory(TinyHTTP)
">>.
