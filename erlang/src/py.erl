%% @doc The `py' module of the original project (erlang-python), as far as
%% its reactor code uses it, over this application's contexts.
%%
%% Code written for the original keeps working: the specification's
%% examples set the protocol factory with `py:exec(py:context(1), Code)' and
%% then hand connections off with {@link py_reactor_context:handoff/2}.
%%
%% A context here is a {@link py_reactor_context} (a port program with its
%% own interpreter). {@link context/1} returns the context with a given id
%% among those supervised by {@link py_reactor_sup}, starting it there when
%% there is none; the first one started this way when no context is
%% registered as `py_reactor_context_default' becomes the default, the one
%% {@link py_reactor_context:handoff/2} uses. Contexts started here run
%% `import erlang, erlang.reactor' first, so that `erlang' is a name in
%% their `__main__', as in the original, and take their other options from
%% the application environment: `{py_reactor, [{context_options, Opts}]}'
%% (see {@link py_reactor_context:start_link/3}; default `#{}').
%%
%% Functions without a context use the default context, started as
%% `context(1)' when there is none.
%%
%% One difference: a context is another OS process, so a descriptor created
%% by Python code in one context (a `socket.socketpair()', say) is a number
%% that means nothing in the VM or in another context. Hand the VM's own
%% descriptors to contexts (see the README, "Differences from the
%% original").
-module(py).

-export([context/0, context/1, start_contexts/0]).
-export([exec/1, exec/2, eval/1, eval/2, call/3, call/4]).
-export([dup_fd/1]).

-define(DEFAULT_NAME, py_reactor_context_default).
-define(PRELUDE, <<"import erlang\nimport erlang.reactor\n">>).

%% @doc The default context: the one registered as
%% `py_reactor_context_default', or else `context(1)'.
-spec context() -> pid().
context() ->
    case whereis(?DEFAULT_NAME) of
        Pid when is_pid(Pid) -> Pid;
        undefined -> context(1)
    end.

%% @doc The context with id `N' supervised by {@link py_reactor_sup}, started
%% (mode `worker') when there is none.
%%
%% Fails with `error({py_context, N, Reason})' when the context cannot be
%% started (the `py_reactor' application is not running, or the Python setup
%% of `context_options' raised), as the original fails when it has no such
%% context.
-spec context(pos_integer()) -> pid().
context(N) when is_integer(N), N > 0 ->
    case running_context(N) of
        {ok, Pid} -> Pid;
        error -> start_context(N)
    end.

%% @doc Starts the contexts named by the application environment
%% `{py_reactor, [{contexts, Count}]}' (default 1), with ids 1 to Count,
%% unless they are running; returns them in id order.
-spec start_contexts() -> {ok, [pid()]}.
start_contexts() ->
    Count = application:get_env(py_reactor, contexts, 1),
    {ok, [context(N) || N <- lists:seq(1, Count)]}.

%% @doc Runs Python statements in the default context's `__main__'.
%% @see py_reactor_context:exec/2
-spec exec(unicode:chardata()) -> ok | {error, term()}.
exec(Code) ->
    exec(context(), Code).

%% @doc Runs Python statements in `Ctx''s `__main__'. Returns `ok', or
%% `{error, {python, Type, Message, Traceback}}' when they raise; other
%% errors as {@link py_reactor_context:exec/3}.
-spec exec(py_reactor_context:server(), unicode:chardata()) -> ok | {error, term()}.
exec(Ctx, Code) ->
    py_reactor_context:exec(Ctx, Code).

%% @doc Evaluates a Python expression in the default context.
%% @see py_reactor_context:eval/2
-spec eval(unicode:chardata()) -> {ok, term()} | {error, term()}.
eval(Expr) ->
    eval(context(), Expr).

%% @doc Evaluates a Python expression in `Ctx''s `__main__' and returns its
%% value as an Erlang term; errors as {@link py_reactor_context:eval/3}.
-spec eval(py_reactor_context:server(), unicode:chardata()) -> {ok, term()} | {error, term()}.
eval(Ctx, Expr) ->
    py_reactor_context:eval(Ctx, Expr).

%% @doc Calls `Module.Function(*Args)' in the default context.
%% @see py_reactor_context:call/4
-spec call(atom() | unicode:chardata(), atom() | unicode:chardata(), [term()])
    -> {ok, term()} | {error, term()}.
call(Module, Function, Args) ->
    call(context(), Module, Function, Args).

%% @doc Calls `Module.Function(*Args)' in `Ctx' (`Module' is imported);
%% returns `{ok, Value}' or errors as {@link py_reactor_context:call/5}.
-spec call(py_reactor_context:server(), atom() | unicode:chardata(),
           atom() | unicode:chardata(), [term()]) -> {ok, term()} | {error, term()}.
call(Ctx, Module, Function, Args) ->
    py_reactor_context:call(Ctx, Module, Function, Args).

%% @doc Duplicates the socket descriptor `Fd' (of a `gen_tcp' socket, from
%% `inet:getfd/1'): the copy stays valid when the socket is closed.
%%
%% Returns `{ok, DupFd}'. Once `DupFd' has been handed off with
%% {@link py_reactor_context:handoff/3} it belongs to the reactor: the VM's
%% copy is closed as the handoff returns, so the caller never closes it.
%% Errors: `{error, not_started}' without the application,
%% `{error, Posix}' when `Fd' cannot be duplicated (not an open socket).
-spec dup_fd(non_neg_integer()) -> {ok, non_neg_integer()} | {error, term()}.
dup_fd(Fd) ->
    py_reactor_dup:dup(Fd).

%% Internal.

running_context(N) ->
    try py_reactor_sup:which_contexts() of
        Contexts ->
            case lists:keyfind(N, 1, Contexts) of
                {N, Pid} when is_pid(Pid) -> {ok, Pid};
                _ -> error
            end
    catch
        exit:{noproc, _} -> error
    end.

start_context(N) ->
    Opts0 = application:get_env(py_reactor, context_options, #{}),
    Setup = [?PRELUDE | [maps:get(setup_code, Opts0) || is_map_key(setup_code, Opts0)]],
    Opts = Opts0#{setup_code => Setup, default => whereis(?DEFAULT_NAME) =:= undefined},
    case start_child(N, Opts) of
        {ok, Pid} ->
            Pid;
        {error, {already_started, _}} when map_get(default, Opts) ->
            %% Another process started a context meanwhile: it is either
            %% this one, or it took the default name first.
            case running_context(N) of
                {ok, Pid} -> Pid;
                error -> start_or_fail(N, Opts#{default => false})
            end;
        {error, Reason} ->
            case running_context(N) of
                {ok, Pid} -> Pid;
                error -> error({py_context, N, Reason})
            end
    end.

start_or_fail(N, Opts) ->
    case start_child(N, Opts) of
        {ok, Pid} -> Pid;
        {error, {already_started, Pid}} when is_pid(Pid) -> Pid;
        {error, Reason} -> error({py_context, N, Reason})
    end.

start_child(N, Opts) ->
    try py_reactor_sup:start_context(N, worker, Opts) of
        {ok, Pid, _Info} ->
            {ok, Pid};
        {error, already_present} ->
            %% Stopped with py_reactor_context:stop/1 (the child is
            %% transient): start it again with today's options.
            _ = py_reactor_sup:stop_context(N),
            start_child(N, Opts);
        Other ->
            Other
    catch
        exit:{noproc, _} -> {error, not_started}
    end.
