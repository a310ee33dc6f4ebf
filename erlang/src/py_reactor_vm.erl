%% @doc The VM's side of the requests Python makes with `erlang.whereis' and
%% `erlang.call' (`{vm_request, Id, Request}' from the port, answered with
%% `{vm_reply, Id, Result}'; see `docs/protocol.md').
%%
%% The Python callback that made the request waits for the answer, so the
%% context answers at once (`whereis') or from a separate process
%% (`call'): it never blocks on the function called.
-module(py_reactor_vm).

-export([handle/3, result_message/2, sendable/1]).
%% Run in the fresh process of a call.
-export([apply_and_exit/3]).

%% @doc Serves `Request' for the context `Ctx' (the calling process): returns
%% `{reply, Result}' to send now, or `noreply' when a process will send the
%% context `{py_reactor_vm_reply, Id, Result}' (see {@link result_message/2})
%% later.
%%
%% Requests: `{whereis, Name}' gives `{ok, Pid | undefined}';
%% `{call, Module, Function, Args, TimeoutMs}' runs
%% `apply(Module, Function, Args)' in a fresh process and gives `{ok, Value}',
%% `{error, {Class, Reason}}' when it raised, `{error, timeout}' when it ran
%% longer than `TimeoutMs' (it is then killed). Anything else gives
%% `{error, {bad_request, Request}}'.
-spec handle(term(), term(), pid()) -> {reply, term()} | noreply.
handle(_Id, {whereis, Name}, _Ctx) when is_atom(Name) ->
    {reply, {ok, whereis(Name)}};
handle(Id, {call, Module, Function, Args, Timeout}, Ctx)
        when is_atom(Module), is_atom(Function), is_list(Args),
             is_integer(Timeout), Timeout >= 0 ->
    _ = spawn(fun() -> Ctx ! result_message(Id, run(Module, Function, Args, Timeout)) end),
    noreply;
handle(_Id, Request, _Ctx) ->
    {reply, {error, {bad_request, Request}}}.

%% @doc The message a `call' runner sends its context.
-spec result_message(term(), term()) -> {py_reactor_vm_reply, term(), term()}.
result_message(Id, Result) ->
    {py_reactor_vm_reply, Id, Result}.

%% @doc `Result' made fit for `{vm_reply, Id, Result}': a value with no
%% Python form becomes `{error, {unconvertible, Text}}', an error reason
%% with none `{error, {Class, Text}}' (`Text', its printed form, a binary).
-spec sendable(term()) -> term().
sendable(Result) ->
    case py_reactor_term:convertible(Result) of
        true -> Result;
        false -> printed(Result)
    end.

printed({error, {Class, Reason}}) when is_atom(Class) ->
    {error, {Class, iolist_to_binary(io_lib:format("~0P", [Reason, 30]))}};
printed(Result) ->
    {error, {unconvertible, iolist_to_binary(io_lib:format("~0P", [Result, 30]))}}.

%% @private The result travels in the exit reason of the fresh process,
%% which its monitor delivers even when the process dies meanwhile.
-spec apply_and_exit(module(), atom(), list()) -> no_return().
apply_and_exit(Module, Function, Args) ->
    Result = try apply(Module, Function, Args) of
        Value -> {ok, Value}
    catch
        Class:Reason -> {error, {Class, Reason}}
    end,
    exit({py_reactor_vm_result, Result}).

run(Module, Function, Args, Timeout) ->
    {Pid, MRef} = spawn_monitor(?MODULE, apply_and_exit, [Module, Function, Args]),
    receive
        {'DOWN', MRef, process, Pid, {py_reactor_vm_result, Result}} -> Result;
        {'DOWN', MRef, process, Pid, Reason} -> {error, {exit, Reason}}
    after Timeout ->
        exit(Pid, kill),
        receive {'DOWN', MRef, process, Pid, _} -> ok end,
        {error, timeout}
    end.
