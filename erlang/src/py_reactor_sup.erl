%% @doc The application's top supervisor, under which users may start
%% reactor contexts.
%%
%% It is a `one_for_one' supervisor that starts with one worker,
%% {@link py_reactor_dup} (which keeps the descriptors of
%% {@link py:dup_fd/1}), and no context. Each context started
%% with {@link start_context/3} becomes a child with the child id
%% `{py_reactor_context, Id}' and the child spec of
%% {@link py_reactor_context:child_spec/1}: restart `transient' (a context that
%% stops with {@link py_reactor_context:stop/1} stays stopped; one whose port
%% program died, `{port_exited, N}' or `{port_killed, Signal}', is restarted
%% with the same arguments, so its Python setup runs again in a new port).
%%
%% Give the context a `name' (or `default => true') to reach it across
%% restarts: the pid changes, the registered name does not.
%%
%% Listeners started with {@link py_reactor:start_listener/2} are children
%% too (`{py_reactor_listener, Name}'), after {@link py_reactor_server}, which
%% keeps their state.
%%
%% Restart intensity: 10 restarts in 10 seconds, then the supervisor (and the
%% application) stops.
-module(py_reactor_sup).
-behaviour(supervisor).

-export([start_link/0]).
-export([start_context/2, start_context/3, stop_context/1, which_contexts/0]).
-export([init/1]).

%% @doc Starts the supervisor, registered as `py_reactor_sup'.
-spec start_link() -> supervisor:startlink_ret().
start_link() ->
    supervisor:start_link({local, ?MODULE}, ?MODULE, []).

%% @equiv start_context(Id, Mode, #{})
-spec start_context(term(), py_reactor_context:mode()) -> supervisor:startchild_ret().
start_context(Id, Mode) ->
    start_context(Id, Mode, #{}).

%% @doc Starts a context supervised by the application.
%%
%% Arguments and options are those of {@link py_reactor_context:start_link/3}.
%% Returns `{error, {python, Type, Message, Traceback}}' when the Python setup
%% fails, and `{error, already_present}' or `{error, {already_started, Pid}}'
%% when a context with this `Id' is already a child.
-spec start_context(term(), py_reactor_context:mode(), py_reactor_context:opts())
    -> supervisor:startchild_ret().
start_context(Id, Mode, Opts) ->
    ChildSpec = py_reactor_context:child_spec(#{id => Id, mode => Mode, opts => Opts}),
    case supervisor:start_child(?MODULE, ChildSpec) of
        {error, {already_started, Pid}} when is_pid(Pid) ->
            {error, {already_started, Pid}};
        {error, {Reason, _FailedChild}} ->
            %% The supervisor wraps the start function's error with its
            %% internal child record; a failed child is not kept.
            {error, Reason};
        Other ->
            Other
    end.

%% @doc Stops the supervised context `Id' (its port is stopped as by
%% {@link py_reactor_context:stop/1}) and removes its child spec.
-spec stop_context(term()) -> ok | {error, not_found}.
stop_context(Id) ->
    ChildId = {py_reactor_context, Id},
    case supervisor:terminate_child(?MODULE, ChildId) of
        ok ->
            ok = supervisor:delete_child(?MODULE, ChildId);
        {error, not_found} ->
            {error, not_found}
    end.

%% @doc The supervised contexts: `{Id, Pid}' for each running one, `{Id,
%% undefined}' for one being restarted or stopped.
-spec which_contexts() -> [{term(), pid() | undefined}].
which_contexts() ->
    [{Id, case Child of
              Pid when is_pid(Pid) -> Pid;
              _ -> undefined
          end}
     || {{py_reactor_context, Id}, Child, _, _} <- supervisor:which_children(?MODULE)].

%% @private
-spec init([]) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init([]) ->
    %% The listeners' state (py_reactor_server) comes first; contexts and
    %% listeners are added as children later.
    Server = #{id => py_reactor_server,
               start => {py_reactor_server, start_link, []},
               restart => permanent,
               shutdown => 5000,
               type => worker},
        %% py_reactor_dup keeps the descriptors py:dup_fd/1 makes.
    Dup = #{id => py_reactor_dup, start => {py_reactor_dup, start_link, []}},
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, [Server, Dup]}}.
