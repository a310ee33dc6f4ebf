%% ASGI 3.0 applications served from Erlang through py_reactor_context, over
%% the real port program and real sockets: a bare ASGI application and a
%% Starlette one (test/erlang/protocols/asgi_suite_apps.py) on connections
%% handed off by the VM and accepted by a listener; `app_interface => auto';
%% the lifespan protocol (`lifespan => auto | on | off', startup state in
%% requests, a failed startup, shutdown on stop); cancellation on stop; many
%% concurrent requests on one context; client disconnects; errors; stats.
-module(py_reactor_asgi_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [protocols_dir/0, listen/0, connect/1, accept/1, wait_until/2,
                              wait_until/3, port_os_pids/0, http_response/1]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [raw_app_over_handoff, starlette_app_over_handoff,
     raw_app_over_a_listener, starlette_app_over_a_listener,
     request_without_body_receives_its_http_request,
     auto_detects_asgi, lifespan_state_reaches_requests,
     lifespan_startup_failure_fails_start_link, lifespan_on_requires_support,
     lifespan_auto_tolerates_no_support, lifespan_off_never_sends,
     lifespan_shutdown_runs_on_stop, pending_request_finally_runs_on_stop,
     thousand_concurrent_sleeps, client_disconnect_is_observed,
     exception_before_start_gives_500, stats_count_requests].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_suite(_Config) ->
    _ = application:stop(py_reactor),
    ok.

%% ---- helpers -----------------------------------------------------------------

opts(Callable, Extra) ->
    maps:merge(#{python_path => [protocols_dir()],
                 app_module => asgi_suite_apps,
                 app_callable => Callable,
                 app_interface => asgi}, Extra).

start(Callable) ->
    start(Callable, #{}).

start(Callable, Extra) ->
    py_reactor_context:start_link(asgi_test, worker, opts(Callable, Extra)).

%% A connection accepted by the VM and handed to the context.
client(Ctx, LSock, Port) ->
    Client = connect(Port),
    ok = py_reactor_context:handoff_socket(Ctx, accept(LSock), #{}),
    Client.

%% One request on Sock and its response: {Status, Headers, Body}.
request(Sock, Method, Path) ->
    request(Sock, Method, Path, <<>>).

request(Sock, Method, Path, Body) ->
    Length = case {Method, Body} of
                 {<<"GET">>, <<>>} -> <<>>;
                 _ -> <<"Content-Length: ", (integer_to_binary(byte_size(Body)))/binary, "\r\n">>
             end,
    ok = gen_tcp:send(Sock, [Method, " ", Path, " HTTP/1.1\r\nHost: test\r\n", Length, "\r\n",
                             Body]),
    http_response(Sock).

%% A listener of one context serving Callable; returns its port.
start_listener(Name, Callable, Extra) ->
    {ok, _} = py_reactor:start_listener(Name, #{ip => {127, 0, 0, 1}, port => 0, contexts => 1,
                                                context_opts => opts(Callable, Extra)}),
    py_reactor:get_port(Name).

lifespan_calls(Ctx) ->
    {ok, N} = py_reactor_context:call(Ctx, asgi_suite_apps, lifespan_calls, []),
    N.

marker(Config, Name) ->
    Path = filename:join(?config(priv_dir, Config), Name),
    _ = file:delete(Path),
    Path.

marker_lines(Path) ->
    case file:read_file(Path) of
        {ok, Text} -> binary:split(Text, <<"\n">>, [global, trim_all]);
        {error, enoent} -> []
    end.

query_path(Route, Marker) ->
    [Route, "?", uri_string:compose_query([{"path", Marker}])].

%% The port programs of this VM are the ones there were before: a context
%% that failed to start left none behind.
ports_back_to(Before) ->
    wait_until(fun() -> port_os_pids() =:= Before end, port_exited).

%% ---- serving -------------------------------------------------------------------

%% GET and POST on one keep-alive connection the VM hands off, and the
%% lifespan startup's state in a request.
raw_app_over_handoff(_Config) ->
    {ok, Ctx} = start(raw_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    {200, _, <<"Hello, world!">>} = request(Sock, <<"GET">>, <<"/hello">>),
    {200, _, <<"POST a=4&b=5">>} = request(Sock, <<"POST">>, <<"/echo">>, <<"a=4&b=5">>),
    {200, _, <<"hello from lifespan">>} = request(Sock, <<"GET">>, <<"/state">>),
    {404, _, _} = request(Sock, <<"GET">>, <<"/nowhere">>),
    ok = gen_tcp:close(Sock),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(Ctx).

starlette_app_over_handoff(_Config) ->
    {ok, Ctx} = start(starlette_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    {200, Headers, <<"Hello from Starlette">>} = request(Sock, <<"GET">>, <<"/hello">>),
    <<"text/plain", _/binary>> = proplists:get_value(<<"content-type">>, Headers),
    {200, _, <<"POST x=1">>} = request(Sock, <<"POST">>, <<"/echo">>, <<"x=1">>),
    %% Starlette's own answer for a method its route does not allow.
    {405, _, _} = request(Sock, <<"GET">>, <<"/echo">>),
    {404, _, _} = request(Sock, <<"GET">>, <<"/nowhere">>),
    ok = gen_tcp:close(Sock),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(Ctx).

raw_app_over_a_listener(_Config) ->
    Port = start_listener(asgi_raw, raw_app, #{}),
    Sock = connect(Port),
    {200, _, <<"Hello, world!">>} = request(Sock, <<"GET">>, <<"/hello">>),
    {200, _, <<"POST 0123456789">>} =
        request(Sock, <<"POST">>, <<"/echo">>, <<"0123456789">>),
    {200, _, <<"hello from lifespan">>} = request(Sock, <<"GET">>, <<"/state">>),
    %% A second connection, while the first stays open.
    Sock2 = connect(Port),
    {200, _, <<"Hello, world!">>} = request(Sock2, <<"GET">>, <<"/hello">>),
    #{contexts := [#{total_requests := 4}]} = py_reactor:info(asgi_raw),
    ok = gen_tcp:close(Sock),
    ok = gen_tcp:close(Sock2),
    ok = py_reactor:stop_listener(asgi_raw).

starlette_app_over_a_listener(_Config) ->
    Port = start_listener(asgi_starlette, starlette_app, #{}),
    Sock = connect(Port),
    {200, _, <<"Hello from Starlette">>} = request(Sock, <<"GET">>, <<"/hello">>),
    Big = binary:copy(<<"y">>, 100000),
    {200, _, <<"POST ", Big/binary>>} = request(Sock, <<"POST">>, <<"/echo">>, Big),
    {200, _, <<"hello from Starlette's lifespan">>} = request(Sock, <<"GET">>, <<"/state">>),
    ok = gen_tcp:close(Sock),
    ok = py_reactor:stop_listener(asgi_starlette).

%% A request without a body (a GET, a POST with `Content-Length: 0') still
%% gets its one `http.request' event (empty `body', `more_body' false) from
%% the first receive(), as the ASGI HTTP specification says; an application
%% that reads the body of every request (Starlette's `await request.body()',
%% this application's `/echo') must not wait for the client to go away.
%% (A request framed as having no body is not one whose body was all
%% delivered already: the first receive() owes it the empty event; see
%% receive in src/python/asgi.rs.)
request_without_body_receives_its_http_request(_Config) ->
    {ok, Ctx} = start(raw_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    {200, _, <<"GET ">>} = request(Sock, <<"GET">>, <<"/echo">>),
    {200, _, <<"POST ">>} = request(Sock, <<"POST">>, <<"/echo">>, <<>>),
    ok = gen_tcp:close(Sock),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(Ctx).

%% `auto' (the default) serves a coroutine function, an object whose
%% `__call__' is one, and a Starlette application as ASGI.
auto_detects_asgi(_Config) ->
    {LSock, Port} = listen(),
    lists:foreach(
      fun({Callable, Extra, Expected}) ->
              {ok, Ctx} = py_reactor_context:start_link(
                            asgi_test, worker, maps:merge(maps:remove(app_interface,
                                                                      opts(Callable, #{})),
                                                          Extra)),
              Sock = client(Ctx, LSock, Port),
              {200, _, Expected} = request(Sock, <<"GET">>, <<"/hello">>),
              ok = gen_tcp:close(Sock),
              ok = py_reactor_context:stop(Ctx)
      end,
      [{raw_app, #{app_interface => auto}, <<"Hello, world!">>},
       {raw_app, #{}, <<"Hello, world!">>},
       {callable_app, #{app_interface => auto}, <<"Hello, world!">>},
       {starlette_app, #{app_interface => auto}, <<"Hello from Starlette">>}]),
    ok = gen_tcp:close(LSock).

%% ---- lifespan ------------------------------------------------------------------

%% What the lifespan startup put into its scope's `state' is in every
%% request's scope["state"] (raw: written into the dict; Starlette: the dict
%% its lifespan yields).
lifespan_state_reaches_requests(_Config) ->
    {LSock, Port} = listen(),
    lists:foreach(
      fun({Callable, Expected}) ->
              {ok, Ctx} = start(Callable),
              1 = lifespan_calls(Ctx),
              Sock1 = client(Ctx, LSock, Port),
              Sock2 = client(Ctx, LSock, Port),
              {200, _, Expected} = request(Sock1, <<"GET">>, <<"/state">>),
              {200, _, Expected} = request(Sock2, <<"GET">>, <<"/state">>),
              {200, _, Expected} = request(Sock1, <<"GET">>, <<"/state">>),
              ok = gen_tcp:close(Sock1),
              ok = gen_tcp:close(Sock2),
              ok = py_reactor_context:stop(Ctx)
      end,
      [{raw_app, <<"hello from lifespan">>},
       {starlette_app, <<"hello from Starlette's lifespan">>}]),
    ok = gen_tcp:close(LSock).

%% `lifespan.startup.failed' makes start_link fail with the application's
%% message, in every lifespan mode that sends a startup; no port is left.
lifespan_startup_failure_fails_start_link(_Config) ->
    Before = port_os_pids(),
    process_flag(trap_exit, true),
    {error, {lifespan_startup_failed, <<"database unreachable">>}} = start(failing_startup_app),
    ports_back_to(Before),
    {error, {lifespan_startup_failed, <<"database unreachable">>}} =
        start(failing_startup_app, #{lifespan => on}),
    ports_back_to(Before),
    %% Through a listener, the context's start error is the listener's.
    {error, {lifespan_startup_failed, <<"database unreachable">>}} =
        py_reactor:start_listener(asgi_failing,
                                  #{ip => {127, 0, 0, 1}, port => 0, contexts => 1,
                                    context_opts => opts(failing_startup_app, #{})}),
    ports_back_to(Before),
    {error, not_found} = py_reactor:get_port(asgi_failing),
    process_flag(trap_exit, false),
    ok.

%% `lifespan => on' requires the protocol: an application that raises on the
%% lifespan scope does not start.
lifespan_on_requires_support(_Config) ->
    Before = port_os_pids(),
    process_flag(trap_exit, true),
    {error, {lifespan_startup_failed, Message}} = start(no_lifespan_app, #{lifespan => on}),
    true = is_binary(Message),
    ct:pal("lifespan => on, unsupported: ~ts", [Message]),
    ports_back_to(Before),
    process_flag(trap_exit, false),
    ok.

%% `lifespan => auto' (and the default) tries the protocol, tolerates an
%% application without it, and serves.
lifespan_auto_tolerates_no_support(_Config) ->
    {LSock, Port} = listen(),
    lists:foreach(
      fun(Extra) ->
              {ok, Ctx} = start(no_lifespan_app, Extra),
              1 = lifespan_calls(Ctx),
              Sock = client(Ctx, LSock, Port),
              {200, _, <<"Hello, world!">>} = request(Sock, <<"GET">>, <<"/hello">>),
              ok = gen_tcp:close(Sock),
              ok = py_reactor_context:stop(Ctx)
      end, [#{lifespan => auto}, #{}]),
    ok = gen_tcp:close(LSock).

%% `lifespan => off' never calls the application with a lifespan scope,
%% neither one without support nor one with it, not even on stop.
lifespan_off_never_sends(Config) ->
    {LSock, Port} = listen(),
    lists:foreach(
      fun(Callable) ->
              Marker = marker(Config, "off_shutdown"),
              {ok, Ctx} = start(Callable, #{lifespan => off}),
              {ok, _} = py_reactor_context:call(Ctx, asgi_suite_apps, set_shutdown_marker,
                                                [list_to_binary(Marker)]),
              Sock = client(Ctx, LSock, Port),
              {200, _, <<"Hello, world!">>} = request(Sock, <<"GET">>, <<"/hello">>),
              0 = lifespan_calls(Ctx),
              ok = gen_tcp:close(Sock),
              ok = py_reactor_context:stop(Ctx),
              {error, enoent} = file:read_file(Marker)
      end, [no_lifespan_app, raw_app]),
    ok = gen_tcp:close(LSock).

%% The lifespan shutdown runs on stop/1, before the port exits (it writes a
%% file, which is there once stop/1 has returned), and when a listener
%% stops.
lifespan_shutdown_runs_on_stop(Config) ->
    lists:foreach(
      fun(Callable) ->
              Marker = marker(Config, atom_to_list(Callable) ++ "_shutdown"),
              {ok, Ctx} = start(Callable),
              {ok, _} = py_reactor_context:call(Ctx, asgi_suite_apps, set_shutdown_marker,
                                                [list_to_binary(Marker)]),
              {error, enoent} = file:read_file(Marker),
              ok = py_reactor_context:stop(Ctx),
              {ok, <<"shutdown">>} = file:read_file(Marker)
      end, [raw_app, starlette_app]),
    %% A listener's contexts too, when it stops (the marker set by the
    %% contexts' setup_code, which runs before the application's import).
    Marker = marker(Config, "listener_shutdown"),
    Setup = iolist_to_binary(["import asgi_suite_apps\n",
                              "asgi_suite_apps.set_shutdown_marker(",
                              io_lib:format("~p", [Marker]), ")\n"]),
    Port = start_listener(asgi_shutdown, starlette_app, #{setup_code => Setup}),
    Sock = connect(Port),
    {200, _, <<"Hello from Starlette">>} = request(Sock, <<"GET">>, <<"/hello">>),
    ok = gen_tcp:close(Sock),
    {error, enoent} = file:read_file(Marker),
    ok = py_reactor:stop_listener(asgi_shutdown),
    {ok, <<"shutdown">>} = file:read_file(Marker).

%% A request still running when the context stops: its task is cancelled
%% and awaited, so its `finally' block runs.
pending_request_finally_runs_on_stop(Config) ->
    Marker = marker(Config, "hang"),
    {ok, Ctx} = start(raw_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    ok = gen_tcp:send(Sock, [<<"GET ">>, query_path(<<"/hang">>, Marker),
                             <<" HTTP/1.1\r\nHost: test\r\n\r\n">>]),
    wait_until(fun() -> marker_lines(Marker) =:= [<<"started">>] end, request_started),
    ok = py_reactor_context:stop(Ctx),
    [<<"started">>, <<"cancelled">>, <<"finally">>] = marker_lines(Marker),
    ok = gen_tcp:close(Sock),
    ok = gen_tcp:close(LSock).

%% ---- concurrency, disconnects, errors, stats ---------------------------------

%% 1,000 connections, each with a request that awaits asyncio.sleep(1), on
%% one context: all answered, and together in far less than the 1,000 s
%% (or 125 s on 8 threads) it would take one or a few at a time. The bound
%% is loose so that a loaded machine does not fail it.
thousand_concurrent_sleeps(_Config) ->
    N = 1000,
    {ok, _} = py_reactor:start_listener(asgi_many,
                                        #{ip => {127, 0, 0, 1}, port => 0, contexts => 1,
                                          backlog => 2048, max_connections => infinity,
                                          context_opts => opts(raw_app,
                                                               #{max_connections => 2000})}),
    Port = py_reactor:get_port(asgi_many),
    Parent = self(),
    T0 = erlang:monotonic_time(millisecond),
    Pids = [spawn_link(fun() -> Parent ! {self(), sleeper(Port)} end) || _ <- lists:seq(1, N)],
    Results = [receive {Pid, R} -> R after 60000 -> ct:fail({no_answer_from, Pid}) end
               || Pid <- Pids],
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    ct:pal("~b requests sleeping 1 s each, answered in ~b ms", [N, Elapsed]),
    Bad = [R || R <- Results, R =/= {200, <<"slept">>}],
    [] = Bad,
    true = Elapsed < 10000,
    #{contexts := [#{total_requests := N}]} = py_reactor:info(asgi_many),
    ok = py_reactor:stop_listener(asgi_many).

sleeper(Port) ->
    try
        {ok, Sock} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 30000),
        ok = gen_tcp:send(Sock, <<"GET /sleep HTTP/1.1\r\nHost: test\r\n\r\n">>),
        {Status, _, Body} = http_response(Sock),
        ok = gen_tcp:close(Sock),
        {Status, Body}
    catch
        Class:Reason -> {Class, Reason}
    end.

%% The application sees `http.disconnect' from receive() once the client
%% closes its connection while the request is being handled (after its
%% body was read; a request with a body, so that this test does not depend
%% on request_without_body_receives_its_http_request).
client_disconnect_is_observed(Config) ->
    Marker = marker(Config, "disconnect"),
    {ok, Ctx} = start(raw_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    ok = gen_tcp:send(Sock, [<<"POST ">>, query_path(<<"/wait_disconnect">>, Marker),
                             <<" HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi">>]),
    wait_until(fun() -> marker_lines(Marker) =:= [<<"waiting">>] end, request_waiting),
    %% Nothing is delivered while the client stays.
    timer:sleep(200),
    [<<"waiting">>] = marker_lines(Marker),
    ok = gen_tcp:close(Sock),
    wait_until(fun() -> marker_lines(Marker) =:= [<<"waiting">>, <<"http.disconnect">>] end,
               disconnect_seen),
    wait_until(fun() -> py_reactor_test_lib:active(Ctx) =:= 0 end, closed),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(Ctx).

%% An exception before `http.response.start' answers 500; the context goes
%% on serving, that connection's next request (if it stays open) and others.
exception_before_start_gives_500(_Config) ->
    {ok, Ctx} = start(raw_app),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    {500, _, _} = request(Sock, <<"GET">>, <<"/raise">>),
    Sock2 = client(Ctx, LSock, Port),
    {200, _, <<"Hello, world!">>} = request(Sock2, <<"GET">>, <<"/hello">>),
    {500, _, _} = request(Sock2, <<"GET">>, <<"/raise">>),
    Sock3 = client(Ctx, LSock, Port),
    {200, _, <<"hello from lifespan">>} = request(Sock3, <<"GET">>, <<"/state">>),
    [ok = gen_tcp:close(S) || S <- [Sock, Sock2, Sock3, LSock]],
    ok = py_reactor_context:stop(Ctx).

%% stats/1 counts every request answered, on one connection or several.
stats_count_requests(_Config) ->
    {ok, Ctx} = start(raw_app),
    #{total_requests := 0} = py_reactor_context:stats(Ctx),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    {200, _, _} = request(Sock, <<"GET">>, <<"/hello">>),
    {200, _, _} = request(Sock, <<"POST">>, <<"/echo">>, <<"x">>),
    Sock2 = client(Ctx, LSock, Port),
    {200, _, _} = request(Sock2, <<"GET">>, <<"/hello">>),
    #{total_requests := 3, active_connections := 2} = py_reactor_context:stats(Ctx),
    %% Two pipelined requests in one send.
    ok = gen_tcp:send(Sock2, <<"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"
                               "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n">>),
    wait_until(fun() -> maps:get(total_requests, py_reactor_context:stats(Ctx)) =:= 5 end,
               five_requests, 10000),
    [ok = gen_tcp:close(S) || S <- [Sock, Sock2, LSock]],
    ok = py_reactor_context:stop(Ctx).
