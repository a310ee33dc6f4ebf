%% Every public function of py_reactor_context answers a mistake with
%% {error, Reason} naming it, never with a crash in the caller, and a context
%% that is gone the same way every time.
-module(py_reactor_args_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

-import(py_reactor_test_lib, [ctx_opts/1, ctx_opts/2]).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [bad_start_arguments, python_path_must_exist, app_callable_needs_app_module,
     bad_arguments_to_a_live_context, gone_context].

init_per_testcase(_Case, Config) ->
    process_flag(trap_exit, true),
    Config.

bad_start_arguments(_Config) ->
    {error, {bad_argument, {opts, [{max_connections, 5}]}}} =
        py_reactor_context:start_link(1, worker, [{max_connections, 5}]),
    {error, {bad_argument, {opts, nothing}}} = py_reactor_context:start_link(1, worker, nothing),
    {error, {bad_mode, fast}} = py_reactor_context:start_link(1, fast),
    {error, {bad_option, {max_connections, 0}}} =
        py_reactor_context:start_link(1, worker, #{max_connections => 0}),
    {error, {bad_option, {python_path, "examples"}}} =
        py_reactor_context:start_link(1, worker, #{python_path => "examples"}),
    {error, {unknown_option, pythonpath}} =
        py_reactor_context:start_link(1, worker, #{pythonpath => ["x"]}),
    {error, {bad_argument, {child_args, []}}} = py_reactor_context:child_spec([]),
    {error, {bad_argument, {child_args, #{mode := worker}}}} =
        py_reactor_context:child_spec(#{mode => worker}),
    [] = py_reactor_test_lib:port_os_pids().

python_path_must_exist(Config) ->
    Missing = filename:join(?config(priv_dir, Config), "no_such_dir"),
    MissingBin = list_to_binary(Missing),
    {error, {bad_python_path, MissingBin, enoent}} =
        py_reactor_context:start_link(1, worker, ctx_opts("Echo", #{python_path => [Missing]})),
    File = filename:join(?config(priv_dir, Config), "a_file"),
    ok = file:write_file(File, <<>>),
    FileBin = list_to_binary(File),
    {error, {bad_python_path, FileBin, enotdir}} =
        py_reactor_context:start_link(1, worker, #{python_path => [File]}).

app_callable_needs_app_module(_Config) ->
    {error, {app_callable_without_app_module, <<"app">>}} =
        py_reactor_context:start_link(1, worker, ctx_opts("Echo", #{app_callable => app})),
    [] = py_reactor_test_lib:port_os_pids().

bad_arguments_to_a_live_context(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo")),
    {L, _} = py_reactor_test_lib:listen(),
    {_C, S} = py_reactor_test_lib:conn_pair(L),
    Calls = [
        {fd, fun() -> py_reactor_context:handoff(Ctx, -1, #{}) end},
        {fd, fun() -> py_reactor_context:handoff(Ctx, "3", #{}) end},
        {client_info, fun() -> py_reactor_context:handoff(Ctx, 3, [{a, 1}]) end},
        {ctx, fun() -> py_reactor_context:handoff("ctx", 3, #{}) end},
        {fd, fun() -> py_reactor_context:handoff(x, #{}) end},
        {socket, fun() -> py_reactor_context:handoff_socket(Ctx, not_a_socket, #{}) end},
        {client_info, fun() -> py_reactor_context:handoff_socket(Ctx, S, none) end},
        {ctx, fun() -> py_reactor_context:handoff_socket(<<"ctx">>, S, #{}) end},
        {ctx, fun() -> py_reactor_context:stats(42) end},
        {timeout, fun() -> py_reactor_context:stats(Ctx, -1) end},
        {ctx, fun() -> py_reactor_context:stop({Ctx}) end},
        {code, fun() -> py_reactor_context:exec(Ctx, 42) end},
        {timeout, fun() -> py_reactor_context:exec(Ctx, "x = 1", soon) end},
        {expr, fun() -> py_reactor_context:eval(Ctx, {expr}) end},
        {ctx, fun() -> py_reactor_context:eval(undefined, "1") end},
        {module, fun() -> py_reactor_context:call(Ctx, 3, f, []) end},
        {function, fun() -> py_reactor_context:call(Ctx, os, [-1], []) end},
        {args, fun() -> py_reactor_context:call(Ctx, os, getcwd, not_a_list) end},
        {args, fun() -> py_reactor_context:call(Ctx, os, getcwd, [a | b]) end},
        {timeout, fun() -> py_reactor_context:call(Ctx, os, getcwd, [], -5) end}
    ],
    [case catch F() of
         {error, {bad_argument, {Name, _}}} -> ok;
         Other -> ct:fail({Name, Other})
     end || {Name, F} <- Calls],
    %% Nothing was harmed: the socket is still the caller's, the context serves.
    {ok, _} = inet:peername(S),
    {ok, 2} = py_reactor_context:eval(Ctx, "1 + 1"),
    #{active_connections := 0} = py_reactor_context:stats(Ctx),
    ok = py_reactor_context:stop(Ctx).

%% A stopped context, a dead pid and an unregistered name: every function
%% answers no_reactor_context (stop/1: ok, as documented), every time.
gone_context(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(1, worker, ctx_opts("Echo")),
    ok = py_reactor_context:stop(Ctx),
    {L, _} = py_reactor_test_lib:listen(),
    {_C, S} = py_reactor_test_lib:conn_pair(L),
    [begin
         Calls = [fun() -> py_reactor_context:handoff(Gone, 0, #{}) end,
                  fun() -> py_reactor_context:handoff_socket(Gone, S, #{}) end,
                  fun() -> py_reactor_context:stats(Gone) end,
                  fun() -> py_reactor_context:stats(Gone, 1000) end,
                  fun() -> py_reactor_context:exec(Gone, "x = 1") end,
                  fun() -> py_reactor_context:exec(Gone, "x = 1", 1000) end,
                  fun() -> py_reactor_context:eval(Gone, "1") end,
                  fun() -> py_reactor_context:eval(Gone, "1", 1000) end,
                  fun() -> py_reactor_context:call(Gone, os, getcwd, []) end,
                  fun() -> py_reactor_context:call(Gone, os, getcwd, [], 1000) end],
         [{error, no_reactor_context} = (catch F()) || F <- Calls, _Twice <- [1, 2]],
         ok = py_reactor_context:stop(Gone)
     end || Gone <- [Ctx, no_such_context]],
    {error, no_reactor_context} = py_reactor_context:handoff(0, #{}),
    %% The socket was not handed off: still the caller's.
    {ok, _} = inet:peername(S).
