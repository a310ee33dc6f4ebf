%% WSGI applications served through py_reactor_context: a Flask application
%% (test/python/wsgi_apps.py, under wsgiref.validate) on connections the VM
%% accepts and hands off, the HTTP options checked, the access log and an
%% application's traceback in the VM's logger with the context's id.
-module(py_reactor_wsgi_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [listen/0, connect/1, accept/1, wait_until/2,
                              capture_logs/0, stop_capture_logs/0, log_events/0,
                              http_response/1]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [flask_app_over_keep_alive, app_exception_is_logged_with_the_context_id, options_are_checked,
     asgi_is_recognised, request_sent_before_the_handoff_is_served,
     multiprocess_in_environ].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_suite(_Config) ->
    _ = application:stop(py_reactor),
    ok.

apps_dir() ->
    Source = proplists:get_value(source, ?MODULE:module_info(compile)),
    filename:join([filename:dirname(filename:dirname(Source)), "python"]).

start(Callable, Extra) ->
    py_reactor_context:start_link(wsgi_test, worker,
                                  maps:merge(#{python_path => [apps_dir()],
                                               app_module => wsgi_apps,
                                               app_callable => Callable}, Extra)).

%% A connection accepted by the VM and handed to the context.
client(Ctx, LSock, Port) ->
    Client = connect(Port),
    ok = py_reactor_context:handoff_socket(Ctx, accept(LSock), #{}),
    Client.

flask_app_over_keep_alive(_Config) ->
    {ok, Ctx} = start(flask_validated, #{access_log => true, threads => 2}),
    ok = capture_logs(),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    ok = gen_tcp:send(Sock, <<"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n">>),
    {200, _, <<"Hello, world!">>} = http_response(Sock),
    ok = gen_tcp:send(Sock, <<"POST /form HTTP/1.1\r\nHost: test\r\n"
                              "Content-Type: application/x-www-form-urlencoded\r\n"
                              "Content-Length: 7\r\n\r\na=4&b=5">>),
    {200, _, <<"4+5">>} = http_response(Sock),
    #{total_requests := 2, python_errors := 0, active_connections := 1} =
        py_reactor_context:stats(Ctx),
    wait_until(fun() ->
                   lists:any(fun({info, Text, #{py_reactor_context := wsgi_test}}) ->
                                     binary:match(Text, <<"\"POST /form HTTP/1.1\" 200 3">>) =/= nomatch;
                                 (_) -> false
                             end, log_events())
               end, access_log_line),
    stop_capture_logs(),
    ok = gen_tcp:close(Sock),
    wait_until(fun() -> py_reactor_test_lib:active(Ctx) =:= 0 end, closed),
    ok = py_reactor_context:stop(Ctx).

app_exception_is_logged_with_the_context_id(_Config) ->
    {ok, Ctx} = start(raw_app, #{}),
    ok = capture_logs(),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    ok = gen_tcp:send(Sock, <<"GET /raise HTTP/1.1\r\nHost: test\r\n\r\n">>),
    {500, _, _} = http_response(Sock),
    {error, closed} = gen_tcp:recv(Sock, 0, 10000),
    wait_until(fun() ->
                   lists:any(fun({error, Text, #{py_reactor_context := wsgi_test}}) ->
                                     binary:match(Text, <<"ZeroDivisionError">>) =/= nomatch;
                                 (_) -> false
                             end, log_events())
               end, traceback_logged),
    stop_capture_logs(),
    #{python_errors := 1, total_requests := 1} = py_reactor_context:stats(Ctx),
    Sock2 = client(Ctx, LSock, Port),
    ok = gen_tcp:send(Sock2, <<"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n">>),
    {200, _, <<"Hello, world!">>} = http_response(Sock2),
    ok = py_reactor_context:stop(Ctx).

options_are_checked(_Config) ->
    [{error, {bad_option, {Key, Value}}} = start(raw_app, #{Key => Value})
     || {Key, Value} <- [{app_interface, cgi}, {threads, 0}, {max_body_size, -1},
                         {keepalive_timeout, infinity}, {header_timeout, <<"10">>},
                         {access_log, yes}, {max_request_line, 1.5},
                         {max_header_block, 0}, {max_header_count, 0}]],
    {ok, Ctx} = start(raw_app, #{max_request_line => 64, keepalive_timeout => 60000,
                                 header_timeout => 60000, threads => 1, max_header_count => 5,
                                 max_header_block => 4096, max_body_size => 10}),
    {LSock, Port} = listen(),
    Sock = client(Ctx, LSock, Port),
    Path = binary:copy(<<"a">>, 100),
    ok = gen_tcp:send(Sock, <<"GET /", Path/binary, " HTTP/1.1\r\nHost: test\r\n\r\n">>),
    {414, _, _} = http_response(Sock),
    ok = py_reactor_context:stop(Ctx).

%% A coroutine function is served as ASGI (auto), and app_interface forces
%% it: a WSGI callable forced to ASGI starts (its failure on the lifespan
%% scope is taken as no lifespan support) and answers 500.
asgi_is_recognised(_Config) ->
    {ok, Ctx} = start(asgi_app, #{}),
    ok = py_reactor_context:stop(Ctx),
    {ok, Ctx2} = start(raw_app, #{app_interface => asgi}),
    {LSock, Port} = listen(),
    Sock = client(Ctx2, LSock, Port),
    ok = gen_tcp:send(Sock, <<"GET / HTTP/1.1\r\nHost: test\r\n\r\n">>),
    {500, _, _} = http_response(Sock),
    ok = py_reactor_context:stop(Ctx2).

%% A request the VM received on an active socket before handoff_socket/3 is
%% the HTTP engine's first input: answered, not lost.
request_sent_before_the_handoff_is_served(_Config) ->
    {ok, Ctx} = start(flask_validated, #{}),
    {ok, L} = gen_tcp:listen(0, [binary, {active, true}, {ip, {127, 0, 0, 1}}]),
    {ok, Port} = inet:port(L),
    {ok, C} = gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}]),
    {ok, S} = gen_tcp:accept(L),
    ok = gen_tcp:send(C, <<"GET /hello HTTP/1.1\r\nHost: test\r\n\r\n">>),
    wait_until(fun() ->
                       {messages, Ms} = process_info(self(), messages),
                       lists:any(fun({tcp, S1, _}) -> S1 =:= S; (_) -> false end, Ms)
               end, tcp_message),
    ok = py_reactor_context:handoff_socket(Ctx, S, #{}),
    {200, _, <<"Hello, world!">>} = http_response(C),
    #{total_requests := 1} = py_reactor_context:stats(Ctx),
    ok = gen_tcp:close(C),
    ok = gen_tcp:close(L),
    ok = py_reactor_context:stop(Ctx).

%% PEP 3333: `wsgi.multiprocess' is true when the same application runs in
%% other processes at once. False for a lone context, true when the context
%% is told so, and under a listener: false with one context, true in each
%% of two.
multiprocess_in_environ(_Config) ->
    {LSock, Port} = listen(),
    {ok, Lone} = start(plain_app, #{}),
    [false] = environ_multiprocess([client(Lone, LSock, Port)]),
    ok = py_reactor_context:stop(Lone),
    {ok, Told} = start(plain_app, #{multiprocess => true}),
    [true] = environ_multiprocess([client(Told, LSock, Port)]),
    ok = py_reactor_context:stop(Told),
    ok = gen_tcp:close(LSock),
    {error, {bad_option, {multiprocess, yes}}} = start(plain_app, #{multiprocess => yes}),
    CtxOpts = #{python_path => [apps_dir()], app_module => wsgi_apps, app_callable => plain_app},
    [begin
         {ok, _} = py_reactor:start_listener(Name, #{ip => {127, 0, 0, 1}, contexts => N,
                                                     num_acceptors => 1,
                                                     context_opts => CtxOpts}),
         LPort = py_reactor:get_port(Name),
         %% One client per context: the acceptor places each connection on
         %% the context with the fewest.
         Clients = [begin
                        C = connect(LPort),
                        wait_until(fun() -> active_connections(Name) =:= I end, {placed, I}),
                        C
                    end || I <- lists:seq(1, N)],
         [1] = lists:usort([A || #{active_connections := A}
                                     <- maps:get(contexts, py_reactor:info(Name))]),
         Expected = environ_multiprocess(Clients),
         ok = py_reactor:stop_listener(Name)
     end || {Name, N, Expected} <- [{wsgi_one_context, 1, [false]},
                                    {wsgi_two_contexts, 2, [true, true]}]],
    ok.

active_connections(Name) ->
    maps:get(active_connections, py_reactor:info(Name)).

%% `wsgi.multiprocess' as the application saw it, for each client in turn
%% (an HTTP/1.0 request: the response ends with the connection).
environ_multiprocess(Clients) ->
    [begin
         ok = gen_tcp:send(C, <<"GET /environ HTTP/1.0\r\n\r\n">>),
         Response = recv_all(C, <<>>),
         {match, [<<"200">>]} = re:run(Response, "^HTTP/1.[01] ([0-9]+)",
                                       [{capture, all_but_first, binary}]),
         {match, [Value]} = re:run(Response, "\"wsgi.multiprocess\": (true|false)",
                                   [{capture, all_but_first, binary}]),
         ok = gen_tcp:close(C),
         binary_to_atom(Value)
     end || C <- Clients].

recv_all(Sock, Acc) ->
    case gen_tcp:recv(Sock, 0, 10000) of
        {ok, Data} -> recv_all(Sock, <<Acc/binary, Data/binary>>);
        {error, closed} -> Acc
    end.
