%% @doc The statistics of a context ({@link py_reactor_context:stats/2}):
%% the counters its port program reports, merged with the counts the
%% context keeps itself.
%%
%% The context's own counts win: it knows exactly which connections it has
%% handed off and which the port has reported closed. Refused handoffs are
%% the sum of both sides' (the context refuses above `max_connections', the
%% port refuses a descriptor it cannot take). A counter a port does not
%% report is 0.
-module(py_reactor_stats).

-export([merge/2]).

%% @doc `PortStats' (the port's reply to `stats') completed with `Own', the
%% context's `id', `mode', `os_pid', `max_connections',
%% `active_connections', `total_connections' and `refused_handoffs'.
-spec merge(map(), #{refused_handoffs := non_neg_integer(), atom() => term()})
    -> py_reactor_context:stats().
merge(PortStats, Own = #{refused_handoffs := Refused}) ->
    Zero = #{total_requests => 0, bytes_in => 0, bytes_out => 0, python_errors => 0,
             refused_handoffs => 0},
    Port = maps:merge(Zero, PortStats),
    maps:merge(Port, Own#{refused_handoffs => Refused + maps:get(refused_handoffs, Port)}).
