%% The context's asyncio event loop (python/erlang/aio.py, src/aio.rs): the
%% loop checks of test/erlang/protocols/asyncio_checks.py, run as tasks
%% through call/4, protocols that return async_pending and answer from a
%% task, the example of examples/asyncio_protocol.py, logging and
%% cancellation at stop.
-module(py_reactor_asyncio_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [protocols_dir/0, listen/0, conn_pair/1,
                              wait_until/2, capture_logs/0, stop_capture_logs/0, log_events/0]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [timer_order, call_soon_fifo, sleep_waits, readers_writers, sock_recv_sendall,
     cancellation, threadsafe, server_and_connection, subprocess, not_offered,
     running_loop, running_loop_in_callback, sync_wrapper, coroutine_error,
     coroutine_call_does_not_block, unretrieved_exception_logged, tasks_cancelled_on_stop,
     async_pending_from_task, many_sleeping_connections, example_asks_backend,
     stubborn_task_abandoned_at_stop, socket_argument_served_by_task, fd_argument_served_by_sync_wrapper, bad_fd_argument].

init_per_testcase(_Case, Config) ->
    process_flag(trap_exit, true),
    Config.

end_per_testcase(_Case, _Config) ->
    stop_capture_logs(),
    ok.

start(Protocol) ->
    start(Protocol, #{}).

start(Protocol, Extra) ->
    Setup = iolist_to_binary(["import asyncio_checks\n", "asyncio_checks.use('", Protocol, "')\n"]),
    Opts = maps:merge(#{python_path => [protocols_dir()], setup_code => Setup}, Extra),
    {ok, Ctx} = py_reactor_context:start_link(asyncio_test, worker, Opts),
    Ctx.

check(Name) ->
    Ctx = start("LoopInCallback"),
    Result = py_reactor_context:call(Ctx, asyncio_checks, Name, [], 60000),
    ok = py_reactor_context:stop(Ctx),
    Result.

%% Loop methods, as CPython's test_asyncio checks them.

timer_order(_Config) ->
    {ok, [1, 2, 3]} = check(check_timer_order).

call_soon_fifo(_Config) ->
    {ok, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]} = check(check_call_soon_fifo).

sleep_waits(_Config) ->
    {ok, true} = check(check_sleep_waits).

readers_writers(_Config) ->
    {ok, {<<"ping">>, true, true, false, 3}} = check(check_readers_writers).

sock_recv_sendall(_Config) ->
    {ok, {true, <<"back">>}} = check(check_sock_recv_sendall).

cancellation(_Config) ->
    {ok, {<<"cancelled">>, [<<"finally">>], <<"timeout">>, true}} = check(check_cancellation).

threadsafe(_Config) ->
    {ok, {<<"from thread">>, [42]}} = check(check_threadsafe).

server_and_connection(_Config) ->
    {ok, {<<"HELLO\n">>, <<"PROTOCOL\n">>}} = check(check_server_and_connection).

subprocess(_Config) ->
    {ok, {<<"from child">>, 0}} = check(check_subprocess).

not_offered(_Config) ->
    {ok, [{<<"add_signal_handler">>, <<"NotImplementedError">>},
          {<<"remove_signal_handler">>, <<"NotImplementedError">>},
          {<<"run_forever">>, <<"RuntimeError">>},
          {<<"run_until_complete">>, <<"RuntimeError">>},
          {<<"stop">>, <<"RuntimeError">>},
          {<<"close">>, <<"RuntimeError">>}]} = check(check_not_offered).

running_loop(_Config) ->
    {ok, {true, true, true, true}} = check(check_running_loop).

%% Inside data_received, get_running_loop() is the context's loop.
running_loop_in_callback(_Config) ->
    Ctx = start("LoopInCallback"),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = gen_tcp:send(Client, <<"which loop?">>),
    {ok, <<"yes">>} = gen_tcp:recv(Client, 3, 5000),
    ok = py_reactor_context:stop(Ctx).

%% A plain function given to call/4 runs outside the loop: asyncio.run works.
sync_wrapper(_Config) ->
    Ctx = start("LoopInCallback"),
    {ok, 42} = py_reactor_context:call(Ctx, asyncio_checks, sync_wrapper, [41]),
    %% The context's loop is still the running one afterwards.
    {ok, {true, true, true, true}} = py_reactor_context:call(Ctx, asyncio_checks, check_running_loop, []),
    ok = py_reactor_context:stop(Ctx).

%% A coroutine raising: call returns the Python error.
coroutine_error(_Config) ->
    Ctx = start("LoopInCallback"),
    {error, {python, <<"KeyError">>, _, _}} =
        py_reactor_context:call(Ctx, asyncio_checks, raise_in_coroutine, []),
    ok = py_reactor_context:stop(Ctx).

%% A coroutine call in progress leaves the context serving other requests
%% and connections.
coroutine_call_does_not_block(_Config) ->
    Ctx = start("LoopInCallback"),
    Self = self(),
    Caller = spawn_link(fun() ->
                            Self ! {sleep_done, py_reactor_context:call(Ctx, asyncio_checks, check_sleep_waits, [])}
                        end),
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = gen_tcp:send(Client, <<"?">>),
    {ok, <<"yes">>} = gen_tcp:recv(Client, 3, 5000),
    receive
        {sleep_done, {ok, true}} -> ok
    after 0 ->
        %% Answered while the coroutine was still asleep.
        receive {sleep_done, {ok, true}} -> ok after 10000 -> ct:fail(no_reply) end
    end,
    unlink(Caller),
    ok = py_reactor_context:stop(Ctx).

%% A task's exception that nobody retrieved goes to the logger, with the
%% context id in the metadata.
unretrieved_exception_logged(_Config) ->
    capture_logs(),
    Ctx = start("LoopInCallback"),
    {ok, <<"left">>} = py_reactor_context:call(Ctx, asyncio_checks, fail_in_task, []),
    wait_until(fun() ->
                   lists:any(fun({error, Text, #{py_reactor_context := asyncio_test}}) ->
                                     binary:match(Text, <<"nobody awaited me">>) =/= nomatch
                                         andalso binary:match(Text, <<"asyncio">>) =/= nomatch;
                                (_) -> false
                             end, put_back(log_events()))
               end, unretrieved_logged),
    ok = py_reactor_context:stop(Ctx).

%% log_events/0 consumes the messages; keep them for the next poll.
put_back(Events) ->
    [self() ! {py_reactor_test_log, L, T, M} || {L, T, M} <- Events],
    Events.

%% Tasks pending at stop are cancelled and awaited: their finally runs.
tasks_cancelled_on_stop(_Config) ->
    Ctx = start("LoopInCallback"),
    Self = self(),
    spawn(fun() -> Self ! {guarded, py_reactor_context:call(Ctx, asyncio_checks, guarded, [Self])} end),
    receive <<"guarded_started">> -> ok after 10000 -> ct:fail(not_started) end,
    ok = py_reactor_context:stop(Ctx),
    receive <<"guarded_cleaned_up">> -> ok after 10000 -> ct:fail(finally_not_run) end,
    %% The cancelled call is answered, not left hanging.
    receive
        {guarded, {error, {python, <<"asyncio.exceptions.CancelledError">>, _, _}}} -> ok;
        {guarded, {error, {port_exited, _}}} -> ok;
        {guarded, {error, stopped}} -> ok;
        {guarded, Other} -> ct:fail({unexpected, Other})
    after 10000 -> ct:fail(no_reply)
    end.

%% A task that ignores cancellation does not hold the stop: it is abandoned
%% after the grace period, with a warning, and the port exits normally.
stubborn_task_abandoned_at_stop(_Config) ->
    capture_logs(),
    Ctx = start("LoopInCallback"),
    Self = self(),
    spawn(fun() -> Self ! {stubborn, py_reactor_context:call(Ctx, asyncio_checks, stubborn, [Self])} end),
    receive <<"stubborn_started">> -> ok after 10000 -> ct:fail(not_started) end,
    ok = py_reactor_context:stop(Ctx),
    receive {stubborn, {error, _}} -> ok after 10000 -> ct:fail(no_reply) end,
    true = lists:any(fun({warning, Text, _}) -> binary:match(Text, <<"still pending">>) =/= nomatch;
                        (_) -> false
                     end, log_events()).

%% A protocol returning async_pending, answered from a task.
async_pending_from_task(_Config) ->
    Ctx = start("SleepThenAnswer"),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = gen_tcp:send(Client, <<"one">>),
    {ok, <<"slept:one">>} = gen_tcp:recv(Client, 9, 10000),
    ok = gen_tcp:send(Client, <<"two">>),
    {ok, <<"slept:two">>} = gen_tcp:recv(Client, 9, 10000),
    ok = py_reactor_context:stop(Ctx).

%% 1,000 connections, each answered after asyncio.sleep(1) in its own task,
%% all concurrently on the one loop: the whole takes seconds, not 1,000.
many_sleeping_connections(_Config) ->
    N = 1000,
    Ctx = start("SleepThenAnswer", #{max_connections => N}),
    {LSock, _} = listen(),
    Clients = [begin
                   {Client, Server} = conn_pair(LSock),
                   ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
                   ok = gen_tcp:close(Server),
                   Client
               end || _ <- lists:seq(1, N)],
    Started = erlang:monotonic_time(millisecond),
    [ok = gen_tcp:send(C, <<"zz">>) || C <- Clients],
    [{ok, <<"slept:zz">>} = gen_tcp:recv(C, 8, 60000) || C <- Clients],
    Elapsed = erlang:monotonic_time(millisecond) - Started,
    ct:pal("~b connections answered after asyncio.sleep(1) in ~b ms", [N, Elapsed]),
    %% Loose: serial sleeps would take 1,000 s.
    true = Elapsed >= 1000,
    true = Elapsed < 60000,
    [gen_tcp:close(C) || C <- Clients],
    ok = py_reactor_context:stop(Ctx).

%% examples/asyncio_protocol.py: each line answered after asking a backend.
example_asks_backend(_Config) ->
    {BackendLSock, BackendPort} = listen(),
    Backend = spawn_link(fun() -> backend(BackendLSock) end),
    ok = gen_tcp:controlling_process(BackendLSock, Backend),
    Examples = filename:join(code:lib_dir(py_reactor), "examples"),
    ExamplesDir = case filelib:is_dir(Examples) of
                      true -> Examples;
                      false -> filename:join([filename:dirname(protocols_dir()), "..", "..", "examples"])
                  end,
    Setup = iolist_to_binary(io_lib:format("import asyncio_protocol\n"
                                           "asyncio_protocol.configure('127.0.0.1', ~b)\n",
                                           [BackendPort])),
    {ok, Ctx} = py_reactor_context:start_link(asyncio_example, worker,
                                              #{python_path => [ExamplesDir], setup_code => Setup,
                                                app_module => <<"asyncio_protocol">>,
                                                app_callable => <<"AskBackend">>}),
    {LSock, _} = listen(),
    Clients = [begin
                   {Client, Server} = conn_pair(LSock),
                   ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
                   Client
               end || _ <- lists:seq(1, 5)],
    [ok = gen_tcp:send(C, <<"first ", (integer_to_binary(I))/binary, "\nsecond\n">>)
     || {I, C} <- lists:zip(lists:seq(1, 5), Clients)],
    [begin
         Expected = <<"backend: first ", (integer_to_binary(I))/binary, "\nbackend: second\n">>,
         {ok, Expected} = gen_tcp:recv(C, byte_size(Expected), 10000)
     end || {I, C} <- lists:zip(lists:seq(1, 5), Clients)],
    ok = py_reactor_context:stop(Ctx),
    unlink(Backend),
    exit(Backend, kill).

%% A backend answering each line of each connection with "backend: Line".
backend(LSock) ->
    {ok, Sock} = gen_tcp:accept(LSock),
    Pid = spawn(fun() -> receive go -> backend_conn(Sock) end end),
    ok = gen_tcp:controlling_process(Sock, Pid),
    Pid ! go,
    backend(LSock).

backend_conn(Sock) ->
    ok = inet:setopts(Sock, [{packet, line}]),
    case gen_tcp:recv(Sock, 0) of
        {ok, Line} ->
            ok = gen_tcp:send(Sock, [<<"backend: ">>, Line]),
            backend_conn(Sock);
        {error, _} ->
            gen_tcp:close(Sock)
    end.

%% A connected gen_tcp socket as a call argument: Python gets the port's own
%% descriptor for it and serves it from a task; the VM's copy is closed, so
%% the client sees the end when Python closes it.
socket_argument_served_by_task(_Config) ->
    Ctx = start("LoopInCallback"),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    ok = gen_tcp:send(Client, <<"hello\n">>),
    {ok, <<"hello">>} = py_reactor_context:call(Ctx, asyncio_checks, serve_fd, [Server]),
    {ok, <<"async:hello\n">>} = gen_tcp:recv(Client, 12, 5000),
    {error, closed} = gen_tcp:recv(Client, 0, 5000),
    {error, _} = inet:getfd(Server),
    ok = py_reactor_context:stop(Ctx).

%% {fd, Fd}: the specification's Method 2 with its sync wrapper.
fd_argument_served_by_sync_wrapper(_Config) ->
    Ctx = start("LoopInCallback"),
    {LSock, _} = listen(),
    {Client, Server} = conn_pair(LSock),
    {ok, Fd} = inet:getfd(Server),
    ok = gen_tcp:send(Client, <<"hi\n">>),
    {ok, <<"hi">>} = py_reactor_context:call(Ctx, asyncio_checks, serve_fd_sync, [{fd, Fd}]),
    {ok, <<"sync:hi\n">>} = gen_tcp:recv(Client, 8, 5000),
    ok = gen_tcp:close(Server),
    {error, closed} = gen_tcp:recv(Client, 0, 5000),
    ok = py_reactor_context:stop(Ctx).

%% A descriptor that cannot be passed is an error, and the context goes on.
bad_fd_argument(_Config) ->
    Ctx = start("LoopInCallback"),
    {error, {aux_socket, _}} = py_reactor_context:call(Ctx, asyncio_checks, serve_fd, [{fd, 1000000}]),
    {ok, 2} = py_reactor_context:eval(Ctx, <<"1 + 1">>),
    ok = py_reactor_context:stop(Ctx).
