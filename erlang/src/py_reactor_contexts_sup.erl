%% @doc The contexts of one listener: `contexts' children, each a
%% {@link py_reactor_context} started with the listener's `context_opts'
%% (and `multiprocess => true' when there is more than one).
%%
%% A context that dies (its port program crashed, say) is restarted here; its
%% connections are lost and released from the listener's counts (see
%% {@link py_reactor_server:context_slot/2}), while the other contexts keep
%% serving and acceptors place new connections on them meanwhile.
%%
%% With `accept => port', each context is given a duplicate of the listening
%% socket as soon as it has started ({@link py_reactor_context:listen/3}),
%% with its share of the listener's `max_connections' and the listener's
%% status, so a context restarted while the listener is suspended stays
%% paused.
-module(py_reactor_contexts_sup).
-behaviour(supervisor).

-export([start_link/1, start_context/2, port_limit/2]).
-export([init/1]).

%% @doc Starts the contexts' supervisor of listener `Name'.
-spec start_link(term()) -> supervisor:startlink_ret().
start_link(Name) ->
    supervisor:start_link(?MODULE, Name).

%% @private The start function of each child.
-spec start_context(term(), pos_integer()) -> {ok, pid()} | {error, term()}.
start_context(Name, Index) ->
    {ok, L = #{context_opts := CtxOpts, contexts := N}} = py_reactor_server:lookup(Name),
    Slot = py_reactor_server:context_slot(L, Index),
    %% PEP 3333: with several contexts the same application runs in several
    %% processes at once.
    Multiprocess = N > 1 orelse maps:get(multiprocess, CtxOpts, false),
    case py_reactor_context:start_link({Name, Index}, worker,
                                       CtxOpts#{listener => Slot,
                                                multiprocess => Multiprocess}) of
        {ok, Pid} ->
            ok = hand_listening_socket(L, Index, Pid),
            ok = py_reactor_server:context_started(Name, Index, Pid),
            {ok, Pid};
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc The share of the listener's limit that context `Index' applies
%% itself with `accept => port': the limit split as evenly as possible
%% (a listener limit below the number of contexts gives some contexts 0,
%% which then do not accept at all), never above the context's own
%% `max_connections'.
-spec port_limit(py_reactor_server:listener(), pos_integer()) -> non_neg_integer().
port_limit(L = #{contexts := N, context_max := CtxMax}, Index) ->
    case py_reactor_server:max_connections(L) of
        infinity ->
            CtxMax;
        Max ->
            Share = Max div N + case Index =< Max rem N of true -> 1; false -> 0 end,
            min(Share, CtxMax)
    end.

hand_listening_socket(#{accept := vm}, _Index, _Pid) ->
    ok;
hand_listening_socket(L = #{accept := port, socket := Socket}, Index, Pid) ->
    {ok, Fd} = inet:getfd(Socket),
    Paused = py_reactor_server:status(L) =/= running,
    py_reactor_context:listen(Pid, Fd, #{max_connections => port_limit(L, Index),
                                         paused => Paused}).

%% @private
-spec init(term()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Name) ->
    {ok, #{contexts := N, context_opts := CtxOpts}} = py_reactor_server:lookup(Name),
    Shutdown = case maps:get(stop_timeout, CtxOpts, 5000) of
        infinity -> infinity;
        T -> T + 2000
    end,
    Children = [#{id => I,
                  start => {?MODULE, start_context, [Name, I]},
                  restart => permanent,
                  shutdown => Shutdown,
                  type => worker,
                  modules => [py_reactor_context]}
                || I <- lists:seq(1, N)],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Children}}.
