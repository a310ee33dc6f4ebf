%% @doc The `py_reactor' system of the benchmark: this project's application
%% handing every accepted connection to one context.
%%
%% ```
%% erl -noshell -pa _build/default/lib/py_reactor/ebin -pa _build/bench/ebin \
%%     -run bench_py_reactor_server main http|echo Port ProtocolsDir
%% '''
%%
%% Starts the `py_reactor' application and one context whose factory is
%% `HttpProtocol' or `EchoProtocol' of `ProtocolsDir/reactor_protocols.py'
%% (`bench/protocols'), listens on 127.0.0.1:`Port' (0 picks a free port),
%% prints `READY <port> <VM os pid> <port program os pid>', and then accepts
%% connections with `gen_tcp:accept/1' and hands each to the context with
%% `py_reactor_context:handoff_socket/3', one after the other, until the VM
%% stops.
-module(bench_py_reactor_server).

-export([main/1]).

-spec main([string()]) -> no_return().
main([ProtoArg, PortArg, ProtocolsDir]) ->
    Factory = case ProtoArg of
        "http" -> <<"HttpProtocol">>;
        "echo" -> <<"EchoProtocol">>
    end,
    {ok, _} = application:ensure_all_started(py_reactor),
    {ok, Ctx} = py_reactor_context:start_link(bench, worker,
                                              #{python_path => [ProtocolsDir],
                                                app_module => <<"reactor_protocols">>,
                                                app_callable => Factory,
                                                max_connections => 20000}),
    #{os_pid := PortPid} = py_reactor_context:stats(Ctx),
    {ok, LSock} = gen_tcp:listen(list_to_integer(PortArg),
                                 [binary, {active, false}, {reuseaddr, true},
                                  {ip, {127, 0, 0, 1}}, {backlog, 4096},
                                  {nodelay, true}]),
    {ok, Port} = inet:port(LSock),
    io:format("READY ~b ~s ~b~n", [Port, os:getpid(), PortPid]),
    accept_loop(LSock, Ctx).

-spec accept_loop(gen_tcp:socket(), pid()) -> no_return().
accept_loop(LSock, Ctx) ->
    case gen_tcp:accept(LSock) of
        {ok, Sock} ->
            case py_reactor_context:handoff_socket(Ctx, Sock, #{}) of
                ok ->
                    ok;
                {error, Reason} ->
                    io:format(standard_error, "handoff refused: ~p~n", [Reason]),
                    _ = gen_tcp:close(Sock),
                    ok
            end;
        {error, Reason} ->
            io:format(standard_error, "accept failed: ~p~n", [Reason])
    end,
    accept_loop(LSock, Ctx).
