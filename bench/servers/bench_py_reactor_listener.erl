%% @doc The `py_reactor' system of the benchmark served through a listener
%% (`py_reactor:start_listener/2'), in either accept mode and with any number
%% of contexts.
%%
%% ```
%% erl -noshell -pa _build/default/lib/py_reactor/ebin -pa _build/bench/ebin \
%%     -run bench_py_reactor_listener main http|echo Port ProtocolsDir vm|port Contexts
%% '''
%%
%% Starts the `py_reactor' application and a listener on 127.0.0.1:`Port'
%% (0 picks a free port) whose contexts run `HttpProtocol' or `EchoProtocol'
%% of `ProtocolsDir/reactor_protocols.py', prints
%% `READY <port> <VM os pid> <port program os pid>...' (one pid per context)
%% and serves until the VM stops.
-module(bench_py_reactor_listener).

-export([main/1]).

-spec main([string()]) -> no_return().
main([ProtoArg, PortArg, ProtocolsDir, AcceptArg, ContextsArg]) ->
    Factory = case ProtoArg of
        "http" -> <<"HttpProtocol">>;
        "echo" -> <<"EchoProtocol">>
    end,
    {ok, _} = application:ensure_all_started(py_reactor),
    Opts = #{ip => {127, 0, 0, 1},
             port => list_to_integer(PortArg),
             backlog => 4096,
             socket_opts => [{nodelay, true}],
             accept => case AcceptArg of "vm" -> vm; "port" -> port end,
             contexts => list_to_integer(ContextsArg),
             max_connections => infinity,
             context_opts => #{python_path => [ProtocolsDir],
                               app_module => <<"reactor_protocols">>,
                               app_callable => Factory,
                               max_connections => 20000}},
    {ok, _} = py_reactor:start_listener(bench, Opts),
    #{port := Port, contexts := Stats} = py_reactor:info(bench),
    PortPids = [integer_to_list(OsPid) || #{os_pid := OsPid} <- Stats],
    io:format("READY ~b ~s ~s~n", [Port, os:getpid(), lists:join(" ", PortPids)]),
    receive after infinity -> ok end.
