%% What a context refuses, it refuses at once and with its reason: terms the
%% port could not decode (checked before sending), handoffs the port has no
%% descriptor for (its descriptor limit), listening sockets handed off by
%% mistake (left working), and a setup that never ends (start_timeout bounds
%% the whole start).
-module(py_reactor_refusal_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [active/1, listen/0, conn_pair/1, echo/2, ctx_opts/1,
                              ctx_opts/2, port_os_pids/0, wait_until/3]).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [deep_call_is_refused_at_once,
     deep_client_info_is_refused_before_sending,
     listening_socket_handoff_leaves_it_working,
     handoffs_past_the_port_fd_limit_are_refused_at_once,
     start_timeout_bounds_the_whole_start].

end_per_testcase(_Case, _Config) ->
    py_reactor_test_lib:stop_capture_logs(),
    ok.

%% A list nested N levels deep.
nested(0) -> [];
nested(N) -> [nested(N - 1)].

deep_call_is_refused_at_once(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(deep_call, worker, #{}),
    Max = py_reactor_term:max_depth(),
    %% The request's tuple, the argument list and 254 levels make 256.
    {ok, 1} = py_reactor_context:call(Ctx, builtins, len, [nested(Max - 2)], 10000),
    {error, {bad_term, {too_deep, Max}}} =
        py_reactor_context:call(Ctx, builtins, len, [nested(Max - 1)], 10000),
    {error, {bad_term, {too_deep, Max}}} =
        py_reactor_context:call(Ctx, builtins, len, [nested(257)], 10000),
    ok = py_reactor_context:stop(Ctx).

deep_client_info_is_refused_before_sending(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(deep_info, worker, ctx_opts("Echo")),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    {error, {bad_term, {too_deep, 256}}} =
        py_reactor_context:handoff_socket(Ctx, Server, #{deep => nested(300)}),
    0 = active(Ctx),
    %% The socket is still the caller's, and works.
    ok = gen_tcp:send(Server, <<"still mine">>),
    {ok, <<"still mine">>} = gen_tcp:recv(Client, 10, 5000),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = echo(Client, <<"served">>),
    ok = py_reactor_context:stop(Ctx).

listening_socket_handoff_leaves_it_working(_Config) ->
    py_reactor_test_lib:capture_logs(),
    {ok, Ctx} = py_reactor_context:start_link(listening, worker, ctx_opts("Echo")),
    {LSock, _} = listen(),
    {ok, Fd} = inet:getfd(LSock),
    ok = py_reactor_context:handoff(Ctx, Fd, #{}),
    ok = wait_until(fun() -> active(Ctx) =:= 0 end, refused_listening_socket, 10000),
    #{refused_handoffs := 1} = py_reactor_context:stats(Ctx),
    %% The VM's own listening socket still accepts.
    {Client, Server} = conn_pair(LSock),
    ok = gen_tcp:send(Client, <<"hi">>),
    {ok, <<"hi">>} = gen_tcp:recv(Server, 2, 5000),
    true = lists:any(fun({warning, Text, _}) -> binary:match(Text, <<"listening_socket">>) =/= nomatch;
                        (_) -> false
                     end, py_reactor_test_lib:log_events()),
    ok = py_reactor_context:stop(Ctx).

%% The port started under `prlimit --nofile=20:20', then 30 handoffs: the
%% ones it has no descriptor for are refused at once with {error, emfile},
%% and active_connections is right at once, not after a 5 s timeout.
handoffs_past_the_port_fd_limit_are_refused_at_once(Config) ->
    py_reactor_test_lib:capture_logs(),
    Exe = filename:join(code:priv_dir(py_reactor), "py_reactor_port"),
    Wrapper = filename:join(?config(priv_dir, Config), "port_at_20_fds"),
    ok = file:write_file(Wrapper, ["#!/bin/sh\nexec prlimit --nofile=20:20 '", Exe, "' \"$@\"\n"]),
    ok = file:change_mode(Wrapper, 8#755),
    {ok, Ctx} = py_reactor_context:start_link(fd_limit, worker,
                                              ctx_opts("Echo", #{port_executable => Wrapper})),
    {LSock, _} = listen(),
    Outcomes = [begin
                    {Client, Server} = conn_pair(LSock),
                    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
                    ok = gen_tcp:send(Client, <<"ping">>),
                    case gen_tcp:recv(Client, 4, 5000) of
                        {ok, <<"ping">>} -> {served, Client};
                        {error, closed} -> refused
                    end
                end || _ <- lists:seq(1, 30)],
    Served = length([C || {served, C} <- Outcomes]),
    Refused = length([R || R = refused <- Outcomes]),
    true = Served > 0 andalso Refused > 0,
    ok = wait_until(fun() -> active(Ctx) =:= Served end, exact_active_connections, 3000),
    #{refused_handoffs := Refused, pending_fds := 0} = py_reactor_context:stats(Ctx),
    Warnings = [T || {warning, T, _} <- py_reactor_test_lib:log_events(),
                     binary:match(T, <<"out of descriptors (emfile)">>) =/= nomatch],
    Refused = length(Warnings),
    ok = py_reactor_context:stop(Ctx).

start_timeout_bounds_the_whole_start(_Config) ->
    Before = port_os_pids(),
    T0 = erlang:monotonic_time(millisecond),
    {error, {timeout, setup}} =
        py_reactor_context:start_link(stuck_setup, worker,
                                      #{setup_code => <<"import time\ntime.sleep(600)">>,
                                        start_timeout => 1000}),
    Elapsed = erlang:monotonic_time(millisecond) - T0,
    ct:log("start_link returned after ~b ms", [Elapsed]),
    %% Not 1000 ms plus the port's own 2 s grace for a stuck interpreter.
    true = Elapsed < 2500,
    Before = port_os_pids().
