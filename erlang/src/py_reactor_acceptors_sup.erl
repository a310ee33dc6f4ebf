%% @doc The acceptors of one listener: `num_acceptors' {@link py_reactor_acceptor}
%% processes with `accept => vm', none with `accept => port' (the ports
%% accept themselves).
-module(py_reactor_acceptors_sup).
-behaviour(supervisor).

-export([start_link/1]).
-export([init/1]).

%% @doc Starts the acceptors' supervisor of listener `Name'.
-spec start_link(term()) -> supervisor:startlink_ret().
start_link(Name) ->
    supervisor:start_link(?MODULE, Name).

%% @private
-spec init(term()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(Name) ->
    {ok, #{num_acceptors := N}} = py_reactor_server:lookup(Name),
    Children = [#{id => K,
                  start => {py_reactor_acceptor, start_link, [Name, K]},
                  restart => permanent,
                  shutdown => brutal_kill,
                  type => worker}
                || K <- lists:seq(1, N)],
    {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Children}}.
