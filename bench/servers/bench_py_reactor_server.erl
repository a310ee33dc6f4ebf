%% @doc The `py_reactor' system of the benchmark: this project's application
%% handing every accepted connection to one context.
%%
%% ```
%% erl -noshell -pa _build/default/lib/py_reactor/ebin -pa _build/bench/ebin \
%%     -run bench_py_reactor_server main http|echo|wsgi_hello|wsgi_flask Port ProtocolsDir
%% '''
%%
%% Starts the `py_reactor' application and one context whose factory is
%% `HttpProtocol' or `EchoProtocol' of `ProtocolsDir/reactor_protocols.py'
%% (`bench/protocols'), or, for `wsgi_hello' and `wsgi_flask', whose WSGI
%% application is `hello' or `flask' of `wsgi_bench_apps.py', listens on 127.0.0.1:`Port' (0 picks a free port),
%% prints `READY <port> <VM os pid> <port program os pid>', and then accepts
%% connections with `gen_tcp:accept/1' and hands each to the context with
%% `py_reactor_context:handoff_socket/3', one after the other, until the VM
%% stops.
-module(bench_py_reactor_server).

-export([main/1]).

-spec main([string()]) -> no_return().
main([ProtoArg, PortArg, ProtocolsDir]) ->
    {Module, Callable} = case ProtoArg of
        "http" -> {<<"reactor_protocols">>, <<"HttpProtocol">>};
        "echo" -> {<<"reactor_protocols">>, <<"EchoProtocol">>};
        %% The WSGI workloads: the same applications gunicorn and granian serve.
        "wsgi_hello" -> {<<"wsgi_bench_apps">>, <<"hello">>};
        "wsgi_flask" -> {<<"wsgi_bench_apps">>, <<"flask">>}
    end,
    {ok, _} = application:ensure_all_started(py_reactor),
    {ok, Ctx} = py_reactor_context:start_link(bench, worker,
                                              #{python_path => [ProtocolsDir],
                                                app_module => Module,
                                                app_callable => Callable,
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
