%% @doc The `py_reactor' system of the benchmark: this project's application
%% handing every accepted connection to one context.
%%
%% ```
%% erl -noshell -pa _build/default/lib/py_reactor/ebin -pa _build/bench/ebin \
%%     -run bench_py_reactor_server main http|echo|wsgi_hello|wsgi_flask|asgi_hello|asgi_starlette \
%%         Port ProtocolsDir
%% '''
%%
%% Starts the `py_reactor' application and one context whose factory is
%% `HttpProtocol' or `EchoProtocol' of `ProtocolsDir/reactor_protocols.py'
%% (`bench/protocols'), or, for `wsgi_hello' and `wsgi_flask', whose WSGI
%% application is `hello' or `flask' of `wsgi_bench_apps.py', or, for
%% `asgi_hello' and `asgi_starlette', whose ASGI application is `hello' or
%% `starlette' of `asgi_bench_apps.py' (lifespan as by default, `auto'),
%% listens on 127.0.0.1:`Port' (0 picks a free port),
%% prints `READY <port> <VM os pid> <port program os pid>', and then accepts
%% connections with `gen_tcp:accept/1' and hands each to the context with
%% `py_reactor_context:handoff_socket/3', one after the other, until the VM
%% stops. A context that does not start prints `FAILED' and the reason and
%% halts the VM with status 1, which the harness reports as that system's
%% failure.
-module(bench_py_reactor_server).

-export([main/1]).

-spec main([string()]) -> no_return().
main([ProtoArg, PortArg, ProtocolsDir]) ->
    {Module, Callable, Interface} = case ProtoArg of
        "http" -> {<<"reactor_protocols">>, <<"HttpProtocol">>, auto};
        "echo" -> {<<"reactor_protocols">>, <<"EchoProtocol">>, auto};
        %% The WSGI workloads: the same applications gunicorn and granian serve.
        "wsgi_hello" -> {<<"wsgi_bench_apps">>, <<"hello">>, auto};
        "wsgi_flask" -> {<<"wsgi_bench_apps">>, <<"flask">>, auto};
        %% The ASGI workloads: the same applications uvicorn and granian serve.
        "asgi_hello" -> {<<"asgi_bench_apps">>, <<"hello">>, asgi};
        "asgi_starlette" -> {<<"asgi_bench_apps">>, <<"starlette">>, asgi}
    end,
    {ok, _} = application:ensure_all_started(py_reactor),
    Ctx = case py_reactor_context:start_link(bench, worker,
                                             #{python_path => [ProtocolsDir],
                                               app_module => Module,
                                               app_callable => Callable,
                                               app_interface => Interface,
                                               max_connections => 20000}) of
        {ok, Pid} ->
            Pid;
        {error, {python, Type, Message, Traceback}} ->
            %% The traceback first: the harness shows the log's last lines.
            io:format("~ts~nFAILED to start the context serving ~s:~s: ~ts: ~ts~n",
                      [Traceback, Module, Callable, Type, Message]),
            erlang:halt(1);
        {error, Reason} ->
            io:format("FAILED to start the context serving ~s:~s: ~tp~n",
                      [Module, Callable, Reason]),
            erlang:halt(1)
    end,
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
