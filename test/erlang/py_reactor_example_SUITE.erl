%% The runnable examples (examples/py_reactor_example.erl with
%% examples/http_protocol.py and examples/echo_protocol.py).
-module(py_reactor_example_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [connect/1, echo/2, recv_all/1, wait_until/2]).

%% A case that hangs fails on its own, with its name, long before the run's
%% outer limit; the slowest case takes well under a minute.
suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [http_example, echo_example, main_prints_curl_line].

end_per_testcase(_Case, _Config) ->
    _ = application:stop(py_reactor),
    ok.

http_example(_Config) ->
    {ok, Server = #{port := Port, listener := Listener}} = py_reactor_example:start(http, 0),
    Parent = self(),
    Paths = [iolist_to_binary(io_lib:format("/path/~b", [N])) || N <- lists:seq(1, 20)],
    Pids = [spawn_link(fun() -> Parent ! {self(), Path, http_get(Port, Path)} end) || Path <- Paths],
    [receive
         {Pid, Path, Response} ->
             <<"HTTP/1.0 200 OK\r\n", _/binary>> = Response,
             Body = <<"Hello! You requested ", Path/binary>>,
             BodySize = byte_size(Body),
             {_, _} = binary:match(Response, iolist_to_binary(
                                                io_lib:format("Content-Length: ~b\r\n", [BodySize]))),
             <<_:(byte_size(Response) - BodySize)/binary, Body:BodySize/binary>> = Response
     after 10000 ->
         ct:fail({no_response, Path})
     end || {Pid, Path} <- lists:zip(Pids, Paths)],
    wait_until(fun() -> maps:get(active_connections, py_reactor:info(Listener)) =:= 0 end,
               all_closed),
    #{total_connections := 20} = py_reactor:info(Listener),
    ok = py_reactor_example:stop(Server),
    {error, econnrefused} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary]).

http_get(Port, Path) ->
    Sock = connect(Port),
    ok = gen_tcp:send(Sock, [<<"GET ">>, Path, <<" HTTP/1.0\r\nHost: localhost\r\n\r\n">>]),
    recv_all(Sock).

echo_example(_Config) ->
    {ok, Server = #{port := Port}} = py_reactor_example:start(echo, 0),
    Socks = [connect(Port) || _ <- lists:seq(1, 5)],
    [ok = echo(S, <<"hello ", (integer_to_binary(N))/binary>>)
     || {N, S} <- lists:zip(lists:seq(1, 5), Socks), _ <- [1, 2, 3]],
    Big = binary:copy(<<"0123456789">>, 100000),
    [S1 | _] = Socks,
    ok = echo(S1, Big),
    ok = py_reactor_example:stop(Server).

main_prints_curl_line(_Config) ->
    Parent = self(),
    Leader = spawn_link(fun() -> io_collector(Parent) end),
    Main = spawn(fun() ->
                     group_leader(Leader, self()),
                     py_reactor_example:main(0)
                 end),
    Line = receive
        {output, Chars} -> iolist_to_binary(Chars)
    after 30000 ->
        ct:fail(nothing_printed)
    end,
    {match, [PortText]} = re:run(Line, "^curl http://127\\.0\\.0\\.1:([0-9]+)/\n$",
                                 [{capture, all_but_first, binary}]),
    Port = binary_to_integer(PortText),
    Sock = connect(Port),
    ok = gen_tcp:send(Sock, <<"GET / HTTP/1.0\r\n\r\n">>),
    <<"HTTP/1.0 200 OK\r\n", _/binary>> = recv_all(Sock),
    true = is_process_alive(Main),
    exit(Main, kill),
    ok.

%% A group leader that forwards what is printed.
io_collector(Parent) ->
    receive
        {io_request, From, ReplyAs, {put_chars, _Encoding, Chars}} ->
            Parent ! {output, Chars},
            From ! {io_reply, ReplyAs, ok};
        {io_request, From, ReplyAs, {put_chars, _Encoding, M, F, A}} ->
            Parent ! {output, apply(M, F, A)},
            From ! {io_reply, ReplyAs, ok};
        {io_request, From, ReplyAs, _} ->
            From ! {io_reply, ReplyAs, {error, enotsup}}
    end,
    io_collector(Parent).
