%% @doc One listener: owns its listening socket and supervises its contexts
%% ({@link py_reactor_contexts_sup}) and its acceptors
%% ({@link py_reactor_acceptors_sup}), in that order.
%%
%% The socket is opened (or adopted, with `listen_socket') in `init/1', so it
%% lives exactly as long as the listener. `rest_for_one': when the contexts'
%% supervisor gives up and is restarted, the acceptors are restarted after
%% it. {@link py_reactor:suspend_listener/1} stops the acceptors' supervisor
%% (the socket stays open, so new clients wait in the kernel's backlog) and
%% {@link py_reactor:resume_listener/1} starts it again.
-module(py_reactor_listener_sup).
-behaviour(supervisor).

-export([start_link/2]).
-export([init/1]).

%% @doc Starts a listener; `Opts' are checked by {@link py_reactor}.
-spec start_link(term(), map()) -> supervisor:startlink_ret().
start_link(Name, Opts) ->
    supervisor:start_link(?MODULE, {Name, Opts}).

%% @private
-spec init({term(), map()}) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init({Name, Opts}) ->
    Socket = case listen(Opts) of
        {ok, S} -> S;
        {error, Reason} -> exit({listen, Reason})
    end,
    Accept = maps:get(accept, Opts),
    Contexts = maps:get(contexts, Opts),
    NumAcceptors = case Accept of vm -> maps:get(num_acceptors, Opts); port -> 0 end,
    CtxOpts = maps:get(context_opts, Opts),
    Listener0 = #{contexts => Contexts,
                  num_acceptors => NumAcceptors,
                  context_opts => CtxOpts,
                  context_max => maps:get(max_connections, CtxOpts, 100),
                  max_connections => maps:get(max_connections, Opts),
                  accept => Accept,
                  socket => Socket,
                  adopted => is_map_key(listen_socket, Opts),
                  drain_timeout => maps:get(drain_timeout, Opts)},
    case py_reactor_server:register_listener(Name, maps:merge(Listener0,
                                                              maps:with([unix_path], Opts))) of
        {ok, _Listener} -> ok;
        {error, already_started} -> exit(already_started)
    end,
    StopTimeout = maps:get(stop_timeout, CtxOpts, 5000),
    Shutdown = case StopTimeout of
        infinity -> infinity;
        _ -> Contexts * (StopTimeout + 2000)
    end,
    Children = [#{id => contexts,
                  start => {py_reactor_contexts_sup, start_link, [Name]},
                  type => supervisor,
                  shutdown => Shutdown},
                #{id => acceptors,
                  start => {py_reactor_acceptors_sup, start_link, [Name]},
                  type => supervisor,
                  shutdown => infinity}],
    {ok, {#{strategy => rest_for_one, intensity => 10, period => 10}, Children}}.

listen(#{listen_socket := Socket}) ->
    {ok, Socket};
listen(Opts = #{port := Port, backlog := Backlog, socket_opts := Extra}) ->
    Base = [binary, {active, false}, {reuseaddr, true}, {backlog, Backlog}],
    IpOpts = case maps:get(ip, Opts, any) of
        any -> [];
        {local, Path} -> [{ifaddr, {local, Path}}];
        Ip -> [{ip, Ip}]
    end,
    ListenPort = case maps:get(ip, Opts, any) of
        {local, _} -> 0;
        _ -> Port
    end,
    gen_tcp:listen(ListenPort, Extra ++ IpOpts ++ Base).
