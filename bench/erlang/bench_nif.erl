%% @doc The `nif_bench' workload: the reactor benchmark of the original
%% NIF-based `py_reactor_context', reproduced with a `gen_tcp' client.
%%
%% ```
%% erl -noshell -pa _build/default/lib/py_reactor/ebin -pa _build/bench/ebin \
%%     -run bench_nif main py_reactor ProtocolsDir PortCpu Messages Lifecycles
%% erl -noshell -pa _build/bench/ebin \
%%     -run bench_nif main remote Port Messages Lifecycles
%% '''
%%
%% For each message size (64, 1024 and 16384 bytes):
%%
%% <ul>
%% <li>persistent: one connection, 50 warm-up round trips, then `Messages'
%%     (500 in the original) timed round trips: `gen_tcp:send/2' of the
%%     message, then `gen_tcp:recv/3' until the whole echo is back;
%%     operations per second.</li>
%% <li>lifecycle: 10 warm-up operations, then `Lifecycles' (100 in the
%%     original) timed ones, each a whole connection; operations per
%%     second.</li>
%% </ul>
%%
%% `py_reactor' mode is the original workload: this VM starts the
%% application and one context running `EchoProtocol' of
%% `ProtocolsDir/reactor_protocols.py', moves the context's port program to
%% CPU `PortCpu' (`taskset'; "-" leaves it), and for every connection
%% listens on an ephemeral port, connects, accepts, closes the listening
%% socket and hands the accepted socket to the context
%% (`py_reactor_context:handoff_socket/3'); a lifecycle operation is all of
%% that plus one echo and the client's close.
%%
%% `remote' mode runs the same client against another system's echo server
%% on 127.0.0.1:`Port': there the server's own listen and accept take the
%% place of listen, accept and handoff, so a lifecycle operation is connect,
%% one echo, close.
%%
%% Prints one line per figure, `RESULT persistent|lifecycle Size OpsPerSec',
%% then halts.
-module(bench_nif).

-export([main/1]).

-define(SIZES, [64, 1024, 16384]).
-define(WARMUP_MESSAGES, 50).
-define(WARMUP_LIFECYCLES, 10).
-define(TIMEOUT, 10000).
-define(SOCK_OPTS, [binary, {active, false}, {nodelay, true}]).

%% How a connection is made: in this VM with a handoff, or to a server.
-type target() :: {py_reactor, pid()} | {remote, inet:port_number()}.

-spec main([string()]) -> no_return().
main(["py_reactor", ProtocolsDir, PortCpu, Messages, Lifecycles]) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    {ok, Ctx} = py_reactor_context:start_link(nif_bench, worker,
                                              #{python_path => [ProtocolsDir],
                                                app_module => <<"reactor_protocols">>,
                                                app_callable => <<"EchoProtocol">>,
                                                max_connections => 1000}),
    #{os_pid := OsPid} = py_reactor_context:stats(Ctx),
    case PortCpu of
        "-" -> ok;
        _ -> pin(OsPid, PortCpu)
    end,
    io:format("PORT_PID ~b~n", [OsPid]),
    run({py_reactor, Ctx}, list_to_integer(Messages), list_to_integer(Lifecycles)),
    ok = py_reactor_context:stop(Ctx),
    halt(0);
main(["remote", Port, Messages, Lifecycles]) ->
    run({remote, list_to_integer(Port)}, list_to_integer(Messages),
        list_to_integer(Lifecycles)),
    halt(0).

-spec run(target(), pos_integer(), pos_integer()) -> ok.
run(Target, Messages, Lifecycles) ->
    lists:foreach(fun(Size) -> persistent(Target, Size, Messages) end, ?SIZES),
    lists:foreach(fun(Size) -> lifecycle(Target, Size, Lifecycles) end, ?SIZES).

pin(OsPid, Cpu) ->
    Cmd = lists:flatten(io_lib:format("taskset -a -p -c ~s ~b", [Cpu, OsPid])),
    Out = os:cmd(Cmd),
    case string:find(Out, "new affinity") of
        nomatch -> erlang:error({taskset_failed, Cmd, Out});
        _ -> ok
    end.

persistent(Target, Size, Messages) ->
    Data = binary:copy(<<$X>>, Size),
    Client = open(Target),
    ok = repeat(?WARMUP_MESSAGES, fun() -> echo(Client, Data) end),
    Start = erlang:monotonic_time(microsecond),
    ok = repeat(Messages, fun() -> echo(Client, Data) end),
    End = erlang:monotonic_time(microsecond),
    ok = gen_tcp:close(Client),
    report(persistent, Size, Messages, End - Start).

lifecycle(Target, Size, Lifecycles) ->
    Data = binary:copy(<<$X>>, Size),
    Once = fun() ->
        Client = open(Target),
        ok = echo(Client, Data),
        ok = gen_tcp:close(Client)
    end,
    ok = repeat(?WARMUP_LIFECYCLES, Once),
    Start = erlang:monotonic_time(microsecond),
    ok = repeat(Lifecycles, Once),
    End = erlang:monotonic_time(microsecond),
    report(lifecycle, Size, Lifecycles, End - Start).

report(Kind, Size, Ops, Micros) ->
    io:format("RESULT ~s ~b ~.1f~n", [Kind, Size, Ops * 1.0e6 / max(Micros, 1)]).

%% A connected client socket whose server side is being served by the target.
open({py_reactor, Ctx}) ->
    {ok, LSock} = gen_tcp:listen(0, [{reuseaddr, true}, {ip, {127, 0, 0, 1}} | ?SOCK_OPTS]),
    {ok, Port} = inet:port(LSock),
    {ok, Client} = gen_tcp:connect({127, 0, 0, 1}, Port, ?SOCK_OPTS, ?TIMEOUT),
    {ok, Server} = gen_tcp:accept(LSock, ?TIMEOUT),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    Client;
open({remote, Port}) ->
    {ok, Client} = gen_tcp:connect({127, 0, 0, 1}, Port, ?SOCK_OPTS, ?TIMEOUT),
    Client.

echo(Client, Data) ->
    ok = gen_tcp:send(Client, Data),
    recv_exactly(Client, byte_size(Data)).

recv_exactly(_Client, 0) ->
    ok;
recv_exactly(Client, Remaining) ->
    {ok, Got} = gen_tcp:recv(Client, 0, ?TIMEOUT),
    recv_exactly(Client, Remaining - byte_size(Got)).

repeat(0, _Fun) ->
    ok;
repeat(N, Fun) ->
    ok = Fun(),
    repeat(N - 1, Fun).
