%% Code written for the original project: the `py' module (context/1,
%% exec/1,2, eval/1,2, call/4, dup_fd/1, start_contexts/0), the reactor
%% entry points as the original calls them (on_read_ready(fd) without data),
%% ReactorBuffer._test_create, and the specification's "Starting a Reactor
%% Server" example run as written (my_server.erl).
%%
%% The behaviours are those the original's own reactor suite checks; where
%% it hands the VM a descriptor Python created in another context (its
%% async_pending case), the descriptor here comes from the VM, the way that
%% works across processes (README, "Differences from the original").
-module(py_reactor_py_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [start_contexts,
     reactor_module_exists,
     protocol_class_exists,
     set_protocol_factory,
     echo_protocol_reads_for_itself,
     multiple_connections,
     protocol_close,
     async_pending,
     reactor_buffer,
     worker_isolation,
     call_and_errors,
     context_becomes_default,
     specification_reactor_server,
     dup_fd_belongs_to_the_reactor,
     dup_fd_errors].

init_per_testcase(_Case, Config) ->
    ok = application:set_env(py_reactor, context_options,
                             #{python_path => [py_reactor_test_lib:protocols_dir()]}),
    {ok, _} = application:ensure_all_started(py_reactor),
    Config.

end_per_testcase(_Case, _Config) ->
    ok = application:stop(py_reactor),
    ok = application:unset_env(py_reactor, context_options),
    ok.

%% Cases.

start_contexts(_Config) ->
    {ok, [Ctx]} = py:start_contexts(),
    %% Idempotent, and context(1) is that context.
    {ok, [Ctx]} = py:start_contexts(),
    Ctx = py:context(1),
    Ctx = whereis(py_reactor_context_default),
    ok = application:set_env(py_reactor, contexts, 2),
    {ok, [Ctx, Ctx2]} = py:start_contexts(),
    true = Ctx2 =/= Ctx,
    ok = application:unset_env(py_reactor, contexts).

reactor_module_exists(_Config) ->
    {ok, _} = py:start_contexts(),
    {ok, true} = py:eval(<<"hasattr(erlang, 'reactor')">>).

protocol_class_exists(_Config) ->
    {ok, true} = py:eval(<<"hasattr(erlang.reactor, 'Protocol')">>),
    {ok, true} = py:eval(<<"callable(erlang.reactor.Protocol)">>).

set_protocol_factory(_Config) ->
    ok = py:exec(<<"
import erlang.reactor as reactor

class FactoryProtocol(reactor.Protocol):
    def data_received(self, data):
        return 'continue'

reactor.set_protocol_factory(FactoryProtocol)
">>),
    {ok, true} = py:eval(<<"erlang.reactor._factory is FactoryProtocol">>),
    {error, {python, <<"TypeError">>, _, _}} =
        py:exec(<<"reactor.set_protocol_factory(42)">>).

%% Python drives a protocol on a socket pair of its own; on_read_ready gets
%% the descriptor only and the protocol reads for itself.
echo_protocol_reads_for_itself(_Config) ->
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"
import socket
import erlang.reactor as reactor

class PairEcho(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(data)
        return 'write_pending'

def pair_echo():
    a, b = socket.socketpair()
    a.setblocking(False)
    reactor.set_protocol_factory(PairEcho)
    reactor.init_connection(a.fileno(), {'type': 'test'})
    b.send(b'hello')
    action = reactor.on_read_ready(a.fileno())
    echoed = bytes(reactor.get_protocol(a.fileno()).write_buffer)
    b.close()
    at_eof = reactor.on_read_ready(a.fileno())
    reactor.close_connection(a.fileno())
    a.close()
    return action, echoed, at_eof

pair_echo_result = pair_echo()
">>),
    {ok, {<<"write_pending">>, <<"hello">>, <<"close">>}} = py:eval(Ctx, <<"pair_echo_result">>).

multiple_connections(_Config) ->
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"
import socket
import erlang.reactor as reactor

class Numbered(reactor.Protocol):
    made = 0
    def connection_made(self, fd, client_info):
        super().connection_made(fd, client_info)
        Numbered.made += 1
        self.number = Numbered.made

def numbered():
    reactor.set_protocol_factory(Numbered)
    pairs = [socket.socketpair() for _ in range(3)]
    for a, _ in pairs:
        reactor.init_connection(a.fileno(), {})
    numbers = [reactor.get_protocol(a.fileno()).number for a, _ in pairs]
    for a, b in pairs:
        reactor.close_connection(a.fileno())
        a.close()
        b.close()
    return numbers

numbered_result = numbered()
">>),
    {ok, [1, 2, 3]} = py:eval(Ctx, <<"numbered_result">>).

protocol_close(_Config) ->
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"
import socket
import erlang.reactor as reactor

lost = []

class Tracked(reactor.Protocol):
    def connection_lost(self):
        lost.append(self.fd)

def tracked():
    reactor.set_protocol_factory(Tracked)
    a, b = socket.socketpair()
    fd = a.fileno()
    reactor.init_connection(fd, {})
    reactor.close_connection(fd)
    reactor.close_connection(fd)
    a.close()
    b.close()
    return lost == [fd]

tracked_result = tracked()
">>),
    {ok, true} = py:eval(Ctx, <<"tracked_result">>).

%% A protocol that returns async_pending and signals its own write
%% readiness, on a connection the VM hands off.
async_pending(_Config) ->
    {ok, _} = py:start_contexts(),
    {ok, ReactorCtx} = py_reactor_context:start_link(1, worker, #{setup_code => <<"
import erlang.reactor as reactor

class AsyncPending(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(b'ASYNC:' + bytes(data))
        reactor.signal_write_ready(self.fd)
        return 'async_pending'

    def write_ready(self):
        written = self.write(bytes(self.write_buffer))
        del self.write_buffer[:written]
        return 'continue' if self.write_buffer else 'close'

reactor.set_protocol_factory(AsyncPending)
">>}),
    {LSock, _} = py_reactor_test_lib:listen(),
    {Client, Server} = py_reactor_test_lib:conn_pair(LSock),
    {ok, Fd} = inet:getfd(Server),
    ok = py_reactor_context:handoff(ReactorCtx, Fd, #{}),
    ok = gen_tcp:send(Client, <<"hello">>),
    <<"ASYNC:hello">> = py_reactor_test_lib:recv_all(Client),
    ok = gen_tcp:close(Server),
    ok = gen_tcp:close(LSock),
    ok = py_reactor_context:stop(ReactorCtx).

reactor_buffer(_Config) ->
    {ok, true} = py:eval(<<"hasattr(erlang, 'ReactorBuffer')">>),
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"
data = b'GET / HTTP/1.1\\r\\n'
buf = erlang.ReactorBuffer._test_create(data)
checks = [
    len(buf) == 16,
    buf.startswith(b'GET') and not buf.startswith(b'POST'),
    buf.endswith(b'\\r\\n'),
    buf[0] == ord('G') and buf[-1] == 10,
    buf[0:3] == b'GET',
    bytes(buf) == data and bytes(memoryview(buf)) == data,
    buf.find(b'HTTP') == 6 and buf.find(b'HTTPS') == -1,
    buf.count(b'/') == 2,
    b'HTTP' in buf and b'HTTPS' not in buf,
    buf.decode('utf-8') == 'GET / HTTP/1.1\\r\\n',
    buf == data and buf != b'other',
]
">>),
    {ok, Checks} = py:eval(Ctx, <<"checks">>),
    11 = length(Checks),
    true = lists:all(fun(C) -> C =:= true end, Checks).

%% Two contexts with different factories: each handoff gets its own.
worker_isolation(_Config) ->
    Setup = fun(Transform) -> iolist_to_binary(["
import erlang.reactor as reactor

class Answer(reactor.Protocol):
    def data_received(self, data):
        self.write_buffer.extend(", Transform, ")
        return 'write_pending'

reactor.set_protocol_factory(Answer)
"]) end,
    {ok, Ctx1} = py_reactor_context:start_link(101, worker, #{setup_code => Setup("bytes(data)")}),
    {ok, Ctx2} = py_reactor_context:start_link(102, worker, #{setup_code => Setup("bytes(data).upper()")}),
    {LSock, _} = py_reactor_test_lib:listen(),
    {C1, S1} = py_reactor_test_lib:conn_pair(LSock),
    {C2, S2} = py_reactor_test_lib:conn_pair(LSock),
    {ok, Fd1} = inet:getfd(S1),
    {ok, Fd2} = inet:getfd(S2),
    ok = py_reactor_context:handoff(Ctx1, Fd1, #{type => test}),
    ok = py_reactor_context:handoff(Ctx2, Fd2, #{type => test}),
    ok = py_reactor_test_lib:echo(C1, <<"hello">>, <<"hello">>),
    ok = py_reactor_test_lib:echo(C2, <<"hello">>, <<"HELLO">>),
    [ok = gen_tcp:close(S) || S <- [C1, S1, C2, S2, LSock]],
    ok = py_reactor_context:stop(Ctx1),
    ok = py_reactor_context:stop(Ctx2).

call_and_errors(_Config) ->
    Ctx = py:context(1),
    {ok, 3} = py:call(Ctx, operator, add, [1, 2]),
    {ok, <<"3">>} = py:call(builtins, str, [3]),
    {error, {python, <<"ZeroDivisionError">>, _, _}} = py:eval(Ctx, <<"1/0">>),
    {error, {python, <<"SyntaxError">>, _, _}} = py:exec(Ctx, <<"def (">>),
    %% Without the application there is no context to start.
    ok = application:stop(py_reactor),
    {'EXIT', {{py_context, 7, not_started}, _}} = (catch py:context(7)),
    {error, not_started} = py:dup_fd(0),
    {ok, _} = application:ensure_all_started(py_reactor).

%% context/1 does not take the default name when another context has it,
%% and finds a context again after it was stopped.
context_becomes_default(_Config) ->
    {ok, Other} = py_reactor_sup:start_context(other, worker, #{default => true}),
    Ctx = py:context(1),
    true = Ctx =/= Other,
    Other = whereis(py_reactor_context_default),
    Other = py:context(),
    ok = py_reactor_context:stop(Ctx),
    Ctx2 = py:context(1),
    true = is_process_alive(Ctx2) andalso Ctx2 =/= Ctx,
    {ok, true} = py:eval(Ctx2, <<"hasattr(erlang, 'reactor')">>).

%% The specification's example, unchanged (my_server.erl): py:context(1),
%% py:exec to set the factory, then its accept loop handing descriptors off
%% to the default context with handoff/2.
specification_reactor_server(_Config) ->
    Port = free_port(),
    Server = spawn(my_server, start, [Port]),
    Client = connect_when_listening(Port, 200),
    ok = py_reactor_test_lib:echo(Client, <<"ping">>, <<"Got: ping">>),
    Client2 = connect_when_listening(Port, 200),
    ok = py_reactor_test_lib:echo(Client2, <<"pong">>, <<"Got: pong">>),
    ok = py_reactor_test_lib:echo(Client, <<"again">>, <<"Got: again">>),
    #{total_connections := 2} = py_reactor_context:stats(py:context(1)),
    ok = gen_tcp:close(Client),
    ok = gen_tcp:close(Client2),
    exit(Server, kill).

%% The specification's Option 2: dup_fd, handoff of the duplicate, close of
%% the VM's socket; the duplicate is closed in the VM by the handoff, and the
%% connection is served and closed by the reactor alone.
dup_fd_belongs_to_the_reactor(_Config) ->
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"
import erlang.reactor as reactor
from my_protocols import MyProtocol
reactor.set_protocol_factory(MyProtocol)
">>),
    {LSock, _} = py_reactor_test_lib:listen(),
    {Client, ClientSock} = py_reactor_test_lib:conn_pair(LSock),
    {ok, Fd} = inet:getfd(ClientSock),
    {ok, DupFd} = py:dup_fd(Fd),
    true = DupFd =/= Fd,
    true = fd_open(DupFd),
    ok = py_reactor_context:handoff(DupFd, #{type => tcp}),
    false = fd_open(DupFd),
    ok = gen_tcp:close(ClientSock),
    ok = py_reactor_test_lib:echo(Client, <<"dup">>, <<"Got: dup">>),
    %% A duplicate that is not handed off stays open until released.
    {Client2, ClientSock2} = py_reactor_test_lib:conn_pair(LSock),
    {ok, Fd2} = inet:getfd(ClientSock2),
    {ok, Dup2} = py:dup_fd(Fd2),
    ok = py_reactor_context:handoff(Fd2, #{}),
    true = fd_open(Dup2),
    ok = py_reactor_dup:release(Dup2),
    false = fd_open(Dup2),
    [ok = gen_tcp:close(S) || S <- [Client, Client2, ClientSock2, LSock]].

dup_fd_errors(_Config) ->
    {error, _} = py:dup_fd(1000000),
    %% A descriptor of the VM that is not a socket (a pipe or a file).
    NotSockets = [list_to_integer(Name)
                  || Name <- element(2, file:list_dir("/proc/self/fd")),
                     {ok, Target} <- [file:read_link("/proc/self/fd/" ++ Name)],
                     not lists:prefix("socket:", Target),
                     not lists:prefix("anon_inode:", Target)],
    [NotSocket | _] = NotSockets,
    {error, _} = py:dup_fd(NotSocket).

%% Helpers.

fd_open(Fd) ->
    case file:read_link("/proc/self/fd/" ++ integer_to_list(Fd)) of
        {ok, _} -> true;
        {error, enoent} -> false
    end.

free_port() ->
    {ok, L} = gen_tcp:listen(0, [{reuseaddr, true}]),
    {ok, Port} = inet:port(L),
    ok = gen_tcp:close(L),
    Port.

connect_when_listening(Port, 0) ->
    ct:fail({not_listening, Port});
connect_when_listening(Port, Tries) ->
    case gen_tcp:connect({127, 0, 0, 1}, Port, [binary, {active, false}], 5000) of
        {ok, Sock} -> Sock;
        {error, econnrefused} -> timer:sleep(50), connect_when_listening(Port, Tries - 1)
    end.
