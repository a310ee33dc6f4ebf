%% Helpers shared by the py_reactor Common Test suites.
-module(py_reactor_test_lib).

-export([protocols_dir/0, setup_code/1, ctx_opts/1, ctx_opts/2]).
-export([listen/0, connect/1, accept/1, conn_pair/1, echo/2, echo/3, recv_closed/1,
         recv_all/1, http_response/1]).
-export([active/1, expect_exit/2, port_cli/1]).
-export([port_os_pids/0, os_pid_alive/1, port_of/1, wait_until/2, wait_until/3]).
-export([capture_logs/0, stop_capture_logs/0, log_events/0, log/2]).

%% Python protocols.

protocols_dir() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join(filename:dirname(Source), "protocols").

setup_code(Protocol) ->
    iolist_to_binary(["import test_protocols\n", "test_protocols.use('", Protocol, "')\n"]).

ctx_opts(Protocol) ->
    ctx_opts(Protocol, #{}).

ctx_opts(Protocol, Extra) ->
    maps:merge(#{python_path => [protocols_dir()], setup_code => setup_code(Protocol)}, Extra).

%% Sockets.

listen() ->
    {ok, LSock} = gen_tcp:listen(0, [binary, {active, false}, {reuseaddr, true},
                                     {ip, {127, 0, 0, 1}}, {backlog, 256}]),
    {ok, Port} = inet:port(LSock),
    {LSock, Port}.

connect(Port) ->
    {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000),
    Sock.

accept(LSock) ->
    {ok, Sock} = gen_tcp:accept(LSock, 5000),
    Sock.

%% A connected pair: {Client, Server}, the server side accepted from LSock.
conn_pair(LSock) ->
    {ok, Port} = inet:port(LSock),
    Client = connect(Port),
    Server = accept(LSock),
    {Client, Server}.

echo(Sock, Data) ->
    echo(Sock, Data, Data).

%% Sends Data and returns once Expected has come back.
echo(Sock, Data, Expected) ->
    ok = gen_tcp:send(Sock, Data),
    recv_exactly(Sock, byte_size(Expected), <<>>, Expected).

recv_exactly(_Sock, 0, Acc, Expected) ->
    case Acc of
        Expected -> ok;
        _ -> ct:fail({unexpected_echo, Acc, Expected})
    end;
recv_exactly(Sock, N, Acc, Expected) ->
    case gen_tcp:recv(Sock, 0, 5000) of
        {ok, Data} when byte_size(Data) =< N ->
            recv_exactly(Sock, N - byte_size(Data), <<Acc/binary, Data/binary>>, Expected);
        {ok, Data} ->
            ct:fail({unexpected_echo, <<Acc/binary, Data/binary>>, Expected});
        {error, Reason} ->
            ct:fail({recv_failed, Reason, Acc, Expected})
    end.

%% The peer must close the connection (after any data) within 5 s.
recv_closed(Sock) ->
    case gen_tcp:recv(Sock, 0, 5000) of
        {error, closed} -> ok;
        {error, econnreset} -> ok;
        {ok, Data} -> recv_closed(Sock, Data);
        {error, timeout} -> ct:fail(connection_not_closed)
    end.

recv_closed(Sock, _Data) ->
    recv_closed(Sock).

%% Everything until the peer closes.
recv_all(Sock) ->
    recv_all(Sock, <<>>).

recv_all(Sock, Acc) ->
    case gen_tcp:recv(Sock, 0, 5000) of
        {ok, Data} -> recv_all(Sock, <<Acc/binary, Data/binary>>);
        {error, closed} -> Acc;
        {error, Reason} -> ct:fail({recv_all, Reason, Acc})
    end.

%% One HTTP/1.1 response read from Sock, its body framed by Content-Length
%% or chunked: {Status, Headers, Body}, header names lowercase.
http_response(Sock) ->
    http_response(Sock, <<>>).

http_response(Sock, Acc) ->
    case binary:split(Acc, <<"\r\n\r\n">>) of
        [Head, Rest] ->
            [StatusLine | HeaderLines] = binary:split(Head, <<"\r\n">>, [global]),
            <<"HTTP/1.1 ", Code:3/binary, _/binary>> = StatusLine,
            Headers = [begin
                           [K, V] = binary:split(Line, <<":">>),
                           {string:lowercase(K), string:trim(V)}
                       end || Line <- HeaderLines],
            Body = case {proplists:get_value(<<"content-length">>, Headers),
                         proplists:get_value(<<"transfer-encoding">>, Headers)} of
                       {undefined, <<"chunked">>} -> http_chunked(Sock, Rest, <<>>);
                       {undefined, _} -> ct:fail({no_body_framing, Head});
                       {N, _} -> http_body(Sock, Rest, binary_to_integer(N))
                   end,
            {binary_to_integer(Code), Headers, Body};
        [_] ->
            {ok, More} = gen_tcp:recv(Sock, 0, 10000),
            http_response(Sock, <<Acc/binary, More/binary>>)
    end.

http_body(_Sock, Data, N) when byte_size(Data) >= N ->
    binary:part(Data, 0, N);
http_body(Sock, Data, N) ->
    {ok, More} = gen_tcp:recv(Sock, 0, 10000),
    http_body(Sock, <<Data/binary, More/binary>>, N).

http_chunked(Sock, Data, Acc) ->
    case binary:split(Data, <<"\r\n">>) of
        [SizeLine, Rest] ->
            [Hex | _] = binary:split(SizeLine, <<";">>),
            case binary_to_integer(string:trim(Hex), 16) of
                0 ->
                    Acc;
                Size when byte_size(Rest) >= Size + 2 ->
                    <<Chunk:Size/binary, "\r\n", Next/binary>> = Rest,
                    http_chunked(Sock, Next, <<Acc/binary, Chunk/binary>>);
                _ ->
                    {ok, More} = gen_tcp:recv(Sock, 0, 10000),
                    http_chunked(Sock, <<Data/binary, More/binary>>, Acc)
            end;
        [_] ->
            {ok, More} = gen_tcp:recv(Sock, 0, 10000),
            http_chunked(Sock, <<Data/binary, More/binary>>, Acc)
    end.

%% OS processes.

%% The py_reactor_port processes started by this VM (children of its
%% erl_child_setup).
port_os_pids() ->
    VmPid = list_to_integer(os:getpid()),
    Procs = [begin
                 [Pid, PPid | Comm] = string:lexemes(Line, " "),
                 {list_to_integer(Pid), list_to_integer(PPid), lists:flatten(lists:join(" ", Comm))}
             end || Line <- string:lexemes(os:cmd("ps -eo pid=,ppid=,comm="), "\n")],
    ChildSetup = [Pid || {Pid, PPid, "erl_child_setup"} <- Procs, PPid =:= VmPid],
    lists:sort([Pid || {Pid, PPid, "py_reactor_port"} <- Procs,
                       lists:member(PPid, ChildSetup)]).

os_pid_alive(OsPid) ->
    case file:read_file("/proc/" ++ integer_to_list(OsPid) ++ "/stat") of
        {ok, Stat} ->
            case string:split(Stat, ")", trailing) of
                [_, <<" Z", _/binary>>] -> false;
                _ -> true
            end;
        {error, _} ->
            false
    end.

port_of(Ctx) ->
    {links, Links} = process_info(Ctx, links),
    [Port] = [P || P <- Links, is_port(P)],
    Port.

wait_until(Fun, What) ->
    wait_until(Fun, What, 10000).

wait_until(Fun, What, Timeout) when Timeout =< 0 ->
    ct:fail({timeout_waiting_for, What, Fun()});
wait_until(Fun, What, Timeout) ->
    case Fun() of
        true -> ok;
        _ -> timer:sleep(20), wait_until(Fun, What, Timeout - 20)
    end.

%% Logs: a logger handler that sends every event to the process that called
%% capture_logs/0.

capture_logs() ->
    _ = logger:remove_handler(py_reactor_test_capture),
    #{level := Level} = logger:get_primary_config(),
    persistent_term:put({?MODULE, primary_level}, Level),
    ok = logger:set_primary_config(level, all),
    ok = logger:add_handler(py_reactor_test_capture, ?MODULE,
                            #{level => all, config => #{pid => self()}}).

stop_capture_logs() ->
    _ = logger:remove_handler(py_reactor_test_capture),
    Level = persistent_term:get({?MODULE, primary_level}, notice),
    ok = logger:set_primary_config(level, Level).

%% Log events received so far: [{Level, Text, Meta}].
log_events() ->
    receive
        {py_reactor_test_log, Level, Text, Meta} -> [{Level, Text, Meta} | log_events()]
    after 0 ->
        []
    end.

%% logger handler callback.
log(#{level := Level, msg := Msg, meta := Meta}, #{config := #{pid := Pid}}) ->
    Text = case Msg of
        {string, S} -> unicode:characters_to_binary(S);
        {report, R} -> iolist_to_binary(io_lib:format("~0p", [R]));
        {Format, Args} -> unicode:characters_to_binary(io_lib:format(Format, Args))
    end,
    Pid ! {py_reactor_test_log, Level, Text, Meta},
    ok.

%% Active connections of a context, from its stats.
active(Ctx) ->
    maps:get(active_connections, py_reactor_context:stats(Ctx)).

%% Waits for the exit of a linked process (the caller traps exits).
expect_exit(Pid, Reason) ->
    receive
        {'EXIT', Pid, Reason} -> ok;
        {'EXIT', Pid, Other} -> ct:fail({unexpected_exit_reason, Other, Reason})
    after 10000 ->
        ct:fail({no_exit, Pid, Reason})
    end.

%% Runs `priv/py_reactor_port Args...' to its end; returns
%% `{ExitStatus, Output}' with stdout and stderr together.
port_cli(Args) ->
    Exe = filename:join(code:priv_dir(py_reactor), "py_reactor_port"),
    Port = open_port({spawn_executable, Exe},
                     [{args, Args}, exit_status, stderr_to_stdout, binary, hide]),
    collect_cli(Port, <<>>).

collect_cli(Port, Acc) ->
    receive
        {Port, {data, Data}} -> collect_cli(Port, <<Acc/binary, Data/binary>>);
        {Port, {exit_status, Status}} -> {Status, Acc}
    after 60000 ->
        ct:fail({cli_timeout, Acc})
    end.
