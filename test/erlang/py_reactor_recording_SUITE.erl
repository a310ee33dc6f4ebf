%% Recording real sessions through py_reactor_context (the `record' and
%% `record_bytes' options, a real port, real TCP clients), reading them back
%% with py_reactor_recording, and replaying them offline with the port
%% program's command line: `py_reactor_port replay' and `dump'.
%%
%% Every scenario checks three things: the recording says what happened
%% (header, descriptors, bytes read and written, frames, end or no end), the
%% replay of the unchanged protocol matches (exit status 0), and a changed
%% protocol makes the replay fail (exit status 1) with the first difference
%% named precisely.
-module(py_reactor_recording_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-import(py_reactor_test_lib, [active/1, expect_exit/2, listen/0, conn_pair/1, echo/2, echo/3, recv_closed/1,
                              recv_all/1, port_of/1, wait_until/2]).

%% A case that hangs fails on its own, with its name, long before the run's
%% outer limit; the slowest case takes well under a minute.
suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [echo_session,
     http_keep_alive_session,
     exception_closes_connection,
     port_exit_mid_session,
     segfault_mid_session,
     replay_reproduces_port_exit,
     replay_reproduces_segfault,
     truncated_copy,
     damaged_files,
     committed_example].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_suite(_Config) ->
    ok.

%% Paths.

repo_root() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:dirname(filename:dirname(filename:dirname(Source))).

examples_dir() ->
    filename:join(repo_root(), "examples").

port_exe() ->
    filename:join(code:priv_dir(py_reactor), "py_reactor_port").

rec_path(Config, Name) ->
    filename:join(?config(priv_dir, Config), Name ++ ".rec").

write_code(Config, Name, Code) ->
    Path = filename:join(?config(priv_dir, Config), Name),
    ok = file:write_file(Path, Code),
    Path.

%% The port program's command line.

%% Runs `py_reactor_port Args...'; returns {ExitStatus, Output} (stdout and
%% stderr together).
cli(Args) ->
    py_reactor_test_lib:port_cli(Args).

replay(Path) ->
    replay(Path, []).

replay(Path, Extra) ->
    {Status, Out} = Result = cli(["replay", Path | Extra]),
    ct:log("replay ~ts ~p~nexit status ~p~n~ts", [Path, Extra, Status, Out]),
    Result.

dump(Path, Extra) ->
    {Status, Out} = Result = cli(["dump", Path | Extra]),
    ct:log("dump ~ts ~p~nexit status ~p~n~ts", [Path, Extra, Status, Out]),
    Result.

contains(Text, Part) ->
    binary:match(Text, iolist_to_binary(Part)) =/= nomatch.

assert_contains(Text, Parts) ->
    [case contains(Text, Part) of
         true -> ok;
         false -> ct:fail({missing_in_output, iolist_to_binary(Part), Text})
     end || Part <- Parts],
    ok.

assert_lacks(Text, Parts) ->
    [case contains(Text, Part) of
         false -> ok;
         true -> ct:fail({unexpected_in_output, iolist_to_binary(Part), Text})
     end || Part <- Parts],
    ok.

%% Recordings.

read_rec(Path) ->
    {ok, Rec} = py_reactor_recording:read(Path),
    ct:log("~ts:~n~p", [Path, Rec]),
    Rec.

reads(Records, Conn) -> [B || {read, _, C, B} <- Records, C =:= Conn].
writes(Records, Conn) -> iolist_to_binary([B || {write, _, C, B} <- Records, C =:= Conn]).
ins(Records) -> [F || {in, _, F} <- Records].
outs(Records) -> [F || {out, _, F} <- Records].

%% Frames to the VM as replay compares them: the hello frame excepted.
compared_outs(Records) ->
    [F || F <- outs(Records), element(1, F) =/= hello].

index_of(Pred, List) ->
    index_of(Pred, List, 0).

index_of(_Pred, [], _I) -> not_found;
index_of(Pred, [X | Rest], I) ->
    case Pred(X) of
        true -> I;
        false -> index_of(Pred, Rest, I + 1)
    end.

%% Checks what every recording has: the header, hello first, times that
%% never go back, a setup request answered ok.
check_common(#{header := Header, records := Records}, OsPid, SetupCode) ->
    #{connection_bytes := true, os_pid := OsPid, started := Started} = Header,
    Now = os:system_time(microsecond),
    ?assert(Started =< Now andalso Started > Now - 600 * 1000000),
    [{out, _, {hello, #{os_pid := OsPid, protocol := 1}}} | _] = Records,
    Times = [element(2, R) || R <- Records],
    ?assertEqual(lists:sort(Times), Times),
    [{setup, Ref, #{setup_code := SetupCode}}] = [F || F = {setup, _, _} <- ins(Records)],
    [ok] = [Result || {reply, R, Result} <- outs(Records), R =:= Ref],
    ok.

os_pid(Ctx) ->
    {os_pid, OsPid} = erlang:port_info(port_of(Ctx), os_pid),
    OsPid.

start_recording(Config, Name, Opts) ->
    Path = rec_path(Config, Name),
    {ok, Ctx} = py_reactor_context:start_link(Name, worker,
                                              Opts#{record => Path, record_bytes => true}),
    {Ctx, Path}.

handed_off(Ctx, LSock) ->
    {Client, Server} = conn_pair(LSock),
    {ok, {_, ClientPort}} = inet:sockname(Client),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    {Client, ClientPort}.

%% HTTP clients.

%% One response: head and body (by Content-Length).
recv_response(Sock) ->
    recv_response(Sock, <<>>).

recv_response(Sock, Acc) ->
    case binary:split(Acc, <<"\r\n\r\n">>) of
        [Head, Rest] ->
            {match, [Len]} = re:run(Head, "Content-Length: ([0-9]+)",
                                    [{capture, all_but_first, binary}]),
            N = binary_to_integer(Len),
            recv_body(Sock, Head, Rest, N);
        [_] ->
            {ok, Data} = gen_tcp:recv(Sock, 0, 5000),
            recv_response(Sock, <<Acc/binary, Data/binary>>)
    end.

recv_body(_Sock, Head, Body, N) when byte_size(Body) =:= N ->
    <<Head/binary, "\r\n\r\n", Body/binary>>;
recv_body(Sock, Head, Body, N) when byte_size(Body) < N ->
    {ok, Data} = gen_tcp:recv(Sock, 0, 5000),
    recv_body(Sock, Head, <<Body/binary, Data/binary>>, N).

http_get(Path) ->
    http_get(Path, []).

http_get(Path, Headers) ->
    iolist_to_binary(["GET ", Path, " HTTP/1.1\r\nHost: localhost\r\n",
                      [[H, "\r\n"] || H <- Headers], "\r\n"]).

%% The protocols.

%% The specification's echo protocol, examples/echo_protocol.py.
echo_setup() ->
    <<"import echo_protocol\n">>.

%% The echo protocol, but shouting what starts with "world".
echo_changed() ->
    <<"import erlang.reactor as reactor\n"
      "import echo_protocol\n"
      "\n"
      "class Shouting(echo_protocol.EchoProtocol):\n"
      "    def data_received(self, data):\n"
      "        if data.startswith(b'world'):\n"
      "            data = bytes(data).upper()\n"
      "        return super().data_received(data)\n"
      "\n"
      "reactor.set_protocol_factory(Shouting)\n">>.

%% examples/http_protocol.py's KeepAliveHTTPProtocol.
http_setup() ->
    <<"import erlang.reactor as reactor\n"
      "import http_protocol\n"
      "reactor.set_protocol_factory(http_protocol.KeepAliveHTTPProtocol)\n">>.

%% The same, but Target is not found.
http_changed(Target) ->
    <<"import erlang.reactor as reactor\n"
      "import http_protocol\n"
      "\n"
      "class NotFound(http_protocol.KeepAliveHTTPProtocol):\n"
      "    def handle_request(self, request):\n"
      "        if request.target == '", Target/binary, "':\n"
      "            self.respond(request, 404, 'Not Found', b'not here')\n"
      "        else:\n"
      "            super().handle_request(request)\n"
      "\n"
      "reactor.set_protocol_factory(NotFound)\n">>.

%% Adds up the integers it is sent, one a line, and answers each line with
%% the running total; "quit" closes. A line that is not a number raises
%% ValueError (the bug); the fixed version answers it with an error line.
adder(Fixed) ->
    Parse = case Fixed of
                false ->
                    <<"            self.total += int(line)\n">>;
                true ->
                    <<"            try:\n"
                      "                self.total += int(line)\n"
                      "            except ValueError:\n"
                      "                self.write_buffer.extend(b'error: not a number\\n')\n"
                      "                continue\n">>
            end,
    <<"import erlang.reactor as reactor\n"
      "\n"
      "class Adder(reactor.Protocol):\n"
      "    def connection_made(self, fd, client_info):\n"
      "        super().connection_made(fd, client_info)\n"
      "        self.total = 0\n"
      "        self.pending = bytearray()\n"
      "\n"
      "    def data_received(self, data):\n"
      "        self.pending.extend(data)\n"
      "        while b'\\n' in self.pending:\n"
      "            line, _, rest = bytes(self.pending).partition(b'\\n')\n"
      "            self.pending[:] = rest\n"
      "            if line == b'quit':\n"
      "                return 'close'\n",
      Parse/binary,
      "            self.write_buffer.extend(b'= %d\\n' % self.total)\n"
      "        return 'write_pending' if self.write_buffer else 'continue'\n"
      "\n"
      "    def write_ready(self):\n"
      "        written = self.write(bytes(self.write_buffer))\n"
      "        del self.write_buffer[:written]\n"
      "        return 'continue' if self.write_buffer else 'read_pending'\n"
      "\n"
      "reactor.set_protocol_factory(Adder)\n">>.

%% An echo protocol that kills its own process on some inputs: "exit"
%% (os._exit(7)) and "segv" (a NULL dereference through ctypes). The
%% changed version never crashes and shouts what starts with "pong".
crasher() ->
    <<"import ctypes\n"
      "import os\n"
      "import erlang.reactor as reactor\n"
      "\n"
      "class Crasher(reactor.Protocol):\n"
      "    def data_received(self, data):\n"
      "        if data.startswith(b'exit'):\n"
      "            os._exit(7)\n"
      "        if data.startswith(b'segv'):\n"
      "            ctypes.string_at(0)\n"
      "        self.write_buffer.extend(data)\n"
      "        return 'write_pending'\n"
      "\n"
      "reactor.set_protocol_factory(Crasher)\n">>.

crasher_changed() ->
    <<"import erlang.reactor as reactor\n"
      "\n"
      "class Changed(reactor.Protocol):\n"
      "    def data_received(self, data):\n"
      "        data = bytes(data)\n"
      "        self.write_buffer.extend(data.upper() if data.startswith(b'pong') else data)\n"
      "        return 'write_pending'\n"
      "\n"
      "reactor.set_protocol_factory(Changed)\n">>.

%% Sessions.

%% Two echo connections, both closed by the client.
record_echo(Config) ->
    {Ctx, Path} = start_recording(Config, "echo", #{python_path => [examples_dir()],
                                                    setup_code => echo_setup()}),
    OsPid = os_pid(Ctx),
    {LSock, _} = listen(),
    {C1, P1} = handed_off(Ctx, LSock),
    ok = echo(C1, <<"hello ">>),
    ok = echo(C1, <<"world">>),
    ok = gen_tcp:close(C1),
    wait_until(fun() -> active(Ctx) =:= 0 end, first_closed),
    {C2, P2} = handed_off(Ctx, LSock),
    ok = echo(C2, <<"abc">>),
    ok = gen_tcp:close(C2),
    wait_until(fun() -> active(Ctx) =:= 0 end, second_closed),
    ok = py_reactor_context:stop(Ctx),
    {Path, OsPid, P1, P2}.

%% Tests.

echo_session(Config) ->
    {Path, OsPid, P1, P2} = record_echo(Config),
    Rec = #{records := Records, truncated := false} = read_rec(Path),
    ok = check_common(Rec, OsPid, echo_setup()),
    [{setup, _, #{python_path := [Examples]}}] = [F || F = {setup, _, _} <- ins(Records)],
    ?assertEqual(filename:absname(examples_dir()), unicode:characters_to_list(Examples)),
    [{fd, _, 1, tcp, Fd1}, {fd, _, 2, tcp, _}] = [R || R = {fd, _, _, _, _} <- Records],
    ?assert(is_integer(Fd1) andalso Fd1 > 2),
    [{handoff, 1, #{addr := <<"127.0.0.1">>, port := P1, type := tcp}},
     {handoff, 2, #{addr := <<"127.0.0.1">>, port := P2, type := tcp}}] =
        [F || F = {handoff, _, _} <- ins(Records)],
    [<<"hello ">>, <<"world">>, <<>>] = reads(Records, 1),
    [<<"abc">>, <<>>] = reads(Records, 2),
    <<"hello world">> = writes(Records, 1),
    <<"abc">> = writes(Records, 2),
    %% What EchoProtocol printed, and how each connection ended.
    Line1 = iolist_to_binary(["Connection from 127.0.0.1:", integer_to_list(P1)]),
    Line2 = iolist_to_binary(["Connection from 127.0.0.1:", integer_to_list(P2)]),
    [Line1, Line2] = [T || {log, info, T = <<"Connection from", _/binary>>} <- outs(Records)],
    [{closed, 1, eof}, {closed, 2, eof}] = [F || F = {closed, _, _} <- outs(Records)],
    [{stop, StopRef}] = [F || F = {stop, _} <- ins(Records)],
    [{reply, StopRef, ok}] = [F || F = {reply, R, _} <- outs(Records), R =:= StopRef],
    {'end', _, stopped} = lists:last(Records),
    %% Replayed as it is: everything matches.
    {0, Out} = replay(Path),
    %% replay counts the header as a record; py_reactor_recording does not.
    assert_contains(Out, ["replay matches: ", integer_to_list(length(Records) + 1), " records"]),
    assert_contains(Out, ["2 connections, 14 bytes written"]),
    assert_lacks(Out, ["cut short"]),
    %% Changed: "world" comes back shouted, 6 bytes into connection 1.
    Changed = write_code(Config, "echo_changed.py", echo_changed()),
    {1, Diff} = replay(Path, ["--setup-code", Changed]),
    assert_contains(Diff, ["replay differs: bytes written to connection 1 differ at offset 6\n",
                           "  expected: \"world\"\n",
                           "  got:      \"WORLD\""]),
    %% dump: a header line, then one line a record.
    {0, Dump} = dump(Path, []),
    [HeaderLine | Lines] = string:split(string:trim(Dump, trailing), "\n", all),
    assert_contains(HeaderLine, ["recording version 1", integer_to_list(OsPid),
                                 "connection bytes recorded"]),
    ?assertEqual(length(Records), length(Lines)),
    assert_contains(Dump, ["read  connection 1: 6 bytes \"hello \"",
                           "write connection 2: 3 bytes \"abc\"",
                           "read  connection 2: end of file",
                           "end   stopped"]),
    {0, Json} = dump(Path, ["--json"]),
    ?assertEqual(length(Records) + 1,
                 length(string:split(string:trim(Json, trailing), "\n", all))).

%% KeepAliveHTTPProtocol: requests one after the other on one connection,
%% then three pipelined in one send, the last asking to close.
http_keep_alive_session(Config) ->
    {Path, Responses} = record_http(Config),
    [RespA, RespB | _] = Responses,
    #{records := Records, truncated := false} = read_rec(Path),
    %% What was read is what the client sent, in as many reads as sends or
    %% more; what was written is what the client received.
    Sent = iolist_to_binary(http_requests()),
    Reads = reads(Records, 1),
    ?assertEqual(Sent, iolist_to_binary(Reads)),
    ?assert(length(Reads) >= 3),
    ?assertNot(lists:member(<<>>, Reads)),   % the protocol closed, not the client
    ?assertEqual(iolist_to_binary(Responses), writes(Records, 1)),
    [{closed, 1, normal}] = [F || F = {closed, _, _} <- outs(Records)],
    {'end', _, stopped} = lists:last(Records),
    {0, Out} = replay(Path),
    assert_contains(Out, ["replay matches: ", "1 connections, ",
                          integer_to_list(byte_size(iolist_to_binary(Responses))),
                          " bytes written"]),
    %% Changed: /b is not found. The difference starts in the status code of
    %% the second response.
    Changed = write_code(Config, "http_changed.py", http_changed(<<"/b">>)),
    {1, Diff} = replay(Path, ["--setup-code", Changed]),
    <<"HTTP/1.1 200 OK", _/binary>> = RespB,
    Offset = byte_size(RespA) + byte_size(<<"HTTP/1.1 ">>),
    assert_contains(Diff, ["replay differs: bytes written to connection 1 differ at offset ",
                           integer_to_list(Offset), "\n",
                           "  expected: \"200 OK\\r\\nContent-Length: 23\\r\\n",
                           "  got:      \"404 Not Found\\r\\nContent-Length: 8\\r\\n"]).

http_requests() ->
    [http_get("/a"),
     http_get("/b"),
     [http_get("/c"), http_get("/d"), http_get("/e", ["Connection: close"])]].

record_http(Config) ->
    {Ctx, Path} = start_recording(Config, "http", #{python_path => [examples_dir()],
                                                    setup_code => http_setup()}),
    {LSock, _} = listen(),
    {C, _} = handed_off(Ctx, LSock),
    [ReqA, ReqB, Pipelined] = http_requests(),
    ok = gen_tcp:send(C, ReqA),
    RespA = recv_response(C),
    ok = gen_tcp:send(C, ReqB),
    RespB = recv_response(C),
    ok = gen_tcp:send(C, Pipelined),
    Rest = recv_all(C),
    Expected = fun(P, Close) ->
                       Body = <<"Hello! You requested ", P/binary>>,
                       iolist_to_binary(["HTTP/1.1 200 OK\r\nContent-Length: ",
                                         integer_to_list(byte_size(Body)),
                                         "\r\nContent-Type: text/plain\r\n",
                                         [<<"Connection: close\r\n">> || Close],
                                         "\r\n", Body])
               end,
    ?assertEqual(Expected(<<"/a">>, false), RespA),
    ?assertEqual(Expected(<<"/b">>, false), RespB),
    ?assertEqual(iolist_to_binary([Expected(<<"/c">>, false), Expected(<<"/d">>, false),
                                   Expected(<<"/e">>, true)]), Rest),
    %% The port closed the connection, then told the VM, before the client
    %% saw the close. No stats request here: its reply counts the bytes
    %% written, which the changed protocols change, and replay compares
    %% frames before bytes.
    ok = py_reactor_context:stop(Ctx),
    {Path, [RespA, RespB, Rest]}.

%% A line that is not a number raises ValueError in data_received: the port
%% closes that connection, logs the traceback and carries on.
exception_closes_connection(Config) ->
    Buggy = adder(false),
    {Ctx, Path} = start_recording(Config, "adder", #{setup_code => Buggy}),
    OsPid = os_pid(Ctx),
    {LSock, _} = listen(),
    {C1, _} = handed_off(Ctx, LSock),
    ok = echo(C1, <<"1\n">>, <<"= 1\n">>),
    ok = echo(C1, <<"2\n">>, <<"= 3\n">>),
    ok = gen_tcp:send(C1, <<"two\n">>),
    ok = recv_closed(C1),
    %% The context goes on serving.
    {C2, _} = handed_off(Ctx, LSock),
    ok = echo(C2, <<"40\n2\n">>, <<"= 40\n= 42\n">>),
    ok = gen_tcp:send(C2, <<"quit\n">>),
    ok = recv_closed(C2),
    ok = py_reactor_context:stop(Ctx),
    Rec = #{records := Records, truncated := false} = read_rec(Path),
    ok = check_common(Rec, OsPid, Buggy),
    [<<"1\n">>, <<"2\n">>, <<"two\n">>] = reads(Records, 1),
    <<"= 1\n= 3\n">> = writes(Records, 1),
    <<"= 40\n= 42\n">> = writes(Records, 2),
    [{closed, 1, {python, <<"ValueError">>, Message, Traceback}}, {closed, 2, normal}] =
        [F || F = {closed, _, _} <- outs(Records)],
    <<"invalid literal for int() with base 10: b'two'">> = Message,
    assert_contains(Traceback, ["Traceback", "in data_received", "ValueError"]),
    [ErrorLog] = [T || {log, error, T} <- outs(Records)],
    assert_contains(ErrorLog, ["ValueError: invalid literal for int()"]),
    {'end', _, stopped} = lists:last(Records),
    %% As it is: the exception happens again, everything matches.
    {0, Out} = replay(Path),
    assert_contains(Out, ["replay matches: ", "2 connections"]),
    %% The fixed code no longer fails: the first difference is the frame that
    %% reported the exception.
    Fixed = write_code(Config, "adder_fixed.py", adder(true)),
    {1, Diff} = replay(Path, ["--setup-code", Fixed]),
    Index = index_of(fun(F) -> element(1, F) =:= log andalso element(2, F) =:= error end,
                     compared_outs(Records)),
    [ExpectedLine] = [L || L = <<"  expected: ", _/binary>> <- string:split(Diff, "\n", all)],
    [GotLine] = [L || L = <<"  got:      ", _/binary>> <- string:split(Diff, "\n", all)],
    assert_contains(Diff, ["replay differs: frame ", integer_to_list(Index), " to the VM differs"]),
    assert_contains(ExpectedLine, ["{log,error,", "ValueError"]),
    assert_lacks(GotLine, ["ValueError", "{log,error,"]),
    %% --expect-fixed: the fixed code passes, the buggy code does not.
    {0, FixedOut} = replay(Path, ["--setup-code", Fixed, "--expect-fixed"]),
    assert_contains(FixedOut, ["replay matches: ", "1 failing connections fixed"]),
    {1, StillOut} = replay(Path, ["--expect-fixed"]),
    assert_contains(StillOut, ["replay differs: connection 1 still fails as in the recording: ",
                               "ValueError"]),
    %% A fix that changes what the failing connection wrote before it
    %% failed is no fix: totals that start at 1.
    Broken = write_code(Config, "adder_broken.py",
                        binary:replace(adder(true), <<"self.total = 0">>, <<"self.total = 1">>)),
    {1, BrokenOut} = replay(Path, ["--setup-code", Broken, "--expect-fixed"]),
    assert_contains(BrokenOut, ["replay differs: bytes written to connection 1 differ at offset 2\n",
                                "  expected: \"1\\n= 3\\n\"\n",
                                "  got:      \"2\\n= 4\\n\""]),
    {0, Dump} = dump(Path, []),
    assert_contains(Dump, ["out   {closed,1,{python,<<\"ValueError\">>",
                           "out   {log,error,"]).

%% The protocol ends its own process (os._exit(7)) in the middle of a
%% session, after serving some traffic.
port_exit_mid_session(Config) ->
    crash_session(Config, "exit", <<"exit now">>, {port_exited, 7}).

%% The same with a NULL dereference: the port dies of SIGSEGV.
segfault_mid_session(Config) ->
    crash_session(Config, "segv", <<"segv now">>, {port_killed, sigsegv}).

crash_session(Config, Name, Fatal, ExitReason) ->
    {Path, OsPid} = record_crash(Config, Name, Fatal, ExitReason),
    Rec = #{records := Records, truncated := false} = read_rec(Path),
    ok = check_common(Rec, OsPid, crasher()),
    [<<"ping">>, <<"pong">>, Fatal] = reads(Records, 1),
    <<"pingpong">> = writes(Records, 1),
    %% The session ends with the fatal read: no close, no end record.
    {read, _, 1, Fatal} = lists:last(Records),
    [] = [R || R = {'end', _, _} <- Records],
    [] = [F || F = {closed, _, _} <- outs(Records)],
    {0, Dump} = dump(Path, []),
    assert_lacks(Dump, [" end "]),
    assert_contains(Dump, ["read  connection 1: 8 bytes \"", Fatal, "\""]),
    %% A changed protocol that does not crash differs where it changed.
    Changed = write_code(Config, Name ++ "_changed.py", crasher_changed()),
    {1, Diff} = replay(Path, ["--setup-code", Changed]),
    assert_contains(Diff, ["replay differs: bytes written to connection 1 differ at offset 4\n",
                           "  expected: \"pong\"\n",
                           "  got:      \"PONG\""]),
    %% Without the fatal read the session replays up to it and matches.
    Cut = filename:join(?config(priv_dir, Config), Name ++ "_cut.rec"),
    {ok, Bin} = file:read_file(Path),
    {LastOffset, LastSize} = lists:last(record_spans(Bin)),
    ok = file:write_file(Cut, binary:part(Bin, 0, LastOffset + LastSize - 3)),
    #{records := CutRecords, truncated := LastOffset} = read_rec(Cut),
    ?assertEqual(lists:droplast(Records), CutRecords),
    {0, CutOut} = replay(Cut),
    assert_contains(CutOut, ["incomplete record at offset ", integer_to_list(LastOffset),
                             "replay matches: ", "(recording cut short: compared up to its end)"]).

%% Replaying a recording that ends where the port died, with the unchanged
%% protocol: the fatal input is fed again and the protocol ends the process
%% again. The replay must still report (exit status 0, the recording was
%% cut short) and not die with the protocol.
replay_reproduces_port_exit(Config) ->
    replay_crash(Config, "exit_again", <<"exit now">>, {port_exited, 7}).

replay_reproduces_segfault(Config) ->
    replay_crash(Config, "segv_again", <<"segv now">>, {port_killed, sigsegv}).

replay_crash(Config, Name, Fatal, ExitReason) ->
    {Path, _} = record_crash(Config, Name, Fatal, ExitReason),
    {Status, Out} = replay(Path),
    ?assertEqual({0, true, true},
                 {Status, contains(Out, "replay matches: "), contains(Out, "cut short")}).

record_crash(Config, Name, Fatal, ExitReason) ->
    process_flag(trap_exit, true),
    {Ctx, Path} = start_recording(Config, Name, #{setup_code => crasher()}),
    OsPid = os_pid(Ctx),
    {LSock, _} = listen(),
    {C, _} = handed_off(Ctx, LSock),
    ok = echo(C, <<"ping">>),
    ok = echo(C, <<"pong">>),
    ok = gen_tcp:send(C, Fatal),
    expect_exit(Ctx, ExitReason),
    ok = recv_closed(C),
    {Path, OsPid}.

%% A copy of a complete recording cut in the middle of a record in the
%% middle of the session, as a death in mid-write leaves it.
truncated_copy(Config) ->
    {Path, _Responses} = record_http(Config),
    {ok, Bin} = file:read_file(Path),
    #{records := Records} = read_rec(Path),
    Spans = record_spans(Bin),
    %% Spans includes the header; records are numbered from the next one.
    ?assertEqual(length(Records) + 1, length(Spans)),
    %% Cut in the middle of the second write record.
    [_, {write, _, 1, Second} | _] = [R || R = {write, _, _, _} <- Records],
    N = index_of(fun(R) -> R =:= lists:nth(2, [W || W = {write, _, _, _} <- Records]) end,
                 Records),
    {Offset, Size} = lists:nth(N + 2, Spans),
    ?assert(Size > 4 + byte_size(Second)),
    Cut = filename:join(?config(priv_dir, Config), "http_cut.rec"),
    ok = file:write_file(Cut, binary:part(Bin, 0, Offset + Size div 2)),
    #{header := #{connection_bytes := true}, records := CutRecords, truncated := Offset} =
        read_rec(Cut),
    ?assertEqual(lists:sublist(Records, N), CutRecords),
    {0, Dump} = dump(Cut, []),
    assert_contains(Dump, ["incomplete record at offset ", integer_to_list(Offset)]),
    {0, Out} = replay(Cut),
    assert_contains(Out, ["incomplete record at offset ", integer_to_list(Offset),
                          "replay matches: ", integer_to_list(N + 1), " records",
                          "(recording cut short: compared up to its end)"]),
    %% What precedes the cut is still compared: a change in the first
    %% response shows...
    NoA = write_code(Config, "http_no_a.py", http_changed(<<"/a">>)),
    {1, Diff} = replay(Cut, ["--setup-code", NoA]),
    assert_contains(Diff, ["replay differs: bytes written to connection 1 differ at offset 9\n",
                           "  expected: \"200 OK", "  got:      \"404 Not Found"]),
    %% ...but what follows it is not: the answer to /b was being written
    %% when the recording ends.
    NoB = write_code(Config, "http_no_b.py", http_changed(<<"/b">>)),
    {0, NoBOut} = replay(Cut, ["--setup-code", NoB]),
    assert_contains(NoBOut, ["replay matches: ", "(recording cut short: compared up to its end)"]).

%% Files that are not recordings, or that are damaged before their end.
damaged_files(Config) ->
    Dir = ?config(priv_dir, Config),
    Garbage = filename:join(Dir, "garbage.rec"),
    ok = file:write_file(Garbage, <<"this is not a recording">>),
    {error, {no_header, 0}} = py_reactor_recording:read(Garbage),
    {2, Out} = replay(Garbage),
    assert_contains(Out, [Garbage, "not a recording"]),
    assert_lacks(Out, ["replay matches", "replay differs"]),
    {2, DumpOut} = dump(Garbage, []),
    assert_contains(DumpOut, [Garbage, "not a recording"]),
    Missing = filename:join(Dir, "missing.rec"),
    {error, {file, enoent}} = py_reactor_recording:read(Missing),
    {2, _} = replay(Missing),
    %% A record in the middle overwritten with bytes that are no term: both
    %% readers name its offset.
    {Path, _, _, _} = record_echo(Config),
    {ok, Bin} = file:read_file(Path),
    Spans = record_spans(Bin),
    {Offset, Size} = lists:nth(length(Spans) div 2, Spans),
    Damaged = filename:join(Dir, "damaged.rec"),
    ok = file:write_file(Damaged, [binary:part(Bin, 0, Offset + 4),
                                   binary:copy(<<255>>, Size - 4),
                                   binary:part(Bin, Offset + Size, byte_size(Bin) - Offset - Size)]),
    {error, {bad_term, Offset}} = py_reactor_recording:read(Damaged),
    {2, DamagedOut} = replay(Damaged),
    assert_contains(DamagedOut, ["offset ", integer_to_list(Offset)]),
    {2, DamagedDump} = dump(Damaged, []),
    assert_contains(DamagedDump, ["offset ", integer_to_list(Offset)]).

%% examples/recordings/http_bug.rec, made by record_example.escript: a
%% keep-alive HTTP protocol that fails on lowercase header names.
committed_example(_Config) ->
    Dir = filename:join(examples_dir(), "recordings"),
    Path = filename:join(Dir, "http_bug.rec"),
    FixedCode = filename:join(Dir, "http_fixed.py"),
    #{header := #{connection_bytes := true}, records := Records, truncated := false} =
        read_rec(Path),
    {'end', _, stopped} = lists:last(Records),
    [{closed, BadConn, {python, <<"KeyError">>, <<"'Host'">>, _}}] =
        [F || F = {closed, _, {python, _, _, _}} <- outs(Records)],
    %% The bug reproduces: the replay matches, and dump shows the exception.
    {0, Out} = replay(Path),
    assert_contains(Out, ["replay matches: "]),
    {0, Dump} = dump(Path, []),
    assert_contains(Dump, ["out   {log,error,<<\"Traceback (most recent call last):",
                           "KeyError: 'Host'",
                           "out   {closed,", integer_to_list(BadConn),
                           ",{python,<<\"KeyError\">>,<<\"'Host'\">>"]),
    %% The fixed protocol no longer fails: the replay differs at the frame
    %% that reported the exception.
    {1, Diff} = replay(Path, ["--setup-code", FixedCode]),
    Index = index_of(fun(F) -> element(1, F) =:= log andalso element(2, F) =:= error end,
                     compared_outs(Records)),
    assert_contains(Diff, ["replay differs: frame ", integer_to_list(Index),
                           " to the VM differs\n  expected: {log,error,",
                           "KeyError"]),
    {0, FixedOut} = replay(Path, ["--setup-code", FixedCode, "--expect-fixed"]),
    assert_contains(FixedOut, ["replay matches: ", "1 failing connections fixed"]),
    {1, StillOut} = replay(Path, ["--expect-fixed"]),
    assert_contains(StillOut, ["connection ", integer_to_list(BadConn),
                               " still fails as in the recording: ", "KeyError"]),
    %% The fixed code is the complete setup code: the lowercase request is
    %% answered when it runs in a real context.
    {ok, Code} = file:read_file(FixedCode),
    {ok, Ctx} = py_reactor_context:start_link(fixed_example, worker, #{setup_code => Code}),
    {LSock, _} = listen(),
    {C, _} = handed_off(Ctx, LSock),
    ok = gen_tcp:send(C, <<"GET /lower HTTP/1.1\r\nhost: localhost\r\n\r\n">>),
    Resp = recv_response(C),
    assert_contains(Resp, ["HTTP/1.1 200 OK", "GET http://localhost/lower"]),
    ok = py_reactor_context:stop(Ctx).

%% The records of a file: [{Offset, Size}] for each complete record, header
%% included (Size counts the 4-byte length).
record_spans(Bin) ->
    record_spans(Bin, 0).

record_spans(Bin, Offset) ->
    case Bin of
        <<_:Offset/binary, Len:32/big, _:Len/binary, _/binary>> ->
            [{Offset, 4 + Len} | record_spans(Bin, Offset + 4 + Len)];
        _ ->
            []
    end.
