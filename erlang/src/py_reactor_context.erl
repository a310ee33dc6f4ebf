%% @doc A reactor context: one `py_reactor_port' OS process running Python
%% protocols on file descriptors handed off from the VM.
%%
%% The API is that of the specification's `py_reactor_context' (start_link/2,3,
%% handoff/2,3, stats/1, stop/1), plus {@link handoff_socket/3},
%% {@link exec/2}, {@link eval/2}, {@link call/4} and {@link child_spec/1}.
%%
%% Each context is a `gen_server' that owns one port program, started with
%% `open_port/2' from `priv/py_reactor_port', and the auxiliary Unix socket over
%% which descriptors are passed. The wire is described in `docs/protocol.md'.
%% The process never blocks on the port: requests are sent and their replies
%% matched by id when they arrive.
%%
%% == Modes ==
%%
%% `worker', `subinterp' and `owngil' are all accepted, for compatibility with
%% the specification. Every context runs its own interpreter in its own OS
%% process, so contexts are always isolated from each other (as subinterpreters
%% with their own GIL would be); the mode is reported by {@link stats/1} and
%% changes nothing else.
%%
%% == Options ==
%%
%% <dl>
%% <dt>`max_connections' (`pos_integer()', default 100)</dt>
%% <dd>Open connections allowed at once. A handoff above it returns
%%     `{error, max_connections}' and sends nothing to the port.</dd>
%% <dt>`setup_code' (`unicode:chardata()')</dt>
%% <dd>Python code run in the `__main__' namespace when the context starts,
%%     typically to call `reactor.set_protocol_factory/1'.</dd>
%% <dt>`app_module' (`atom() | unicode:chardata()')</dt>
%% <dd>A Python module imported at start (after `setup_code').</dd>
%% <dt>`app_callable' (`atom() | unicode:chardata()')</dt>
%% <dd>An attribute of `app_module' that must be callable; it becomes the
%%     protocol factory.</dd>
%% <dt>`app_interface' (`auto | wsgi | asgi | protocol', default `auto')</dt>
%% <dd>What `app_callable' is: `protocol', a protocol factory; `wsgi', a
%%     WSGI application, or `asgi', an ASGI 3.0 application, served over
%%     HTTP/1.1 on every connection handed to the context
%%     (`docs/http.md'). `auto' picks `protocol' for a `reactor.Protocol'
%%     subclass or a callable taking no arguments, `asgi' for a coroutine
%%     function (or an object whose `__call__' is one), `wsgi'
%%     otherwise.</dd>
%% <dt>`lifespan' (`auto | on | off', default `auto')</dt>
%% <dd>The ASGI `lifespan' scope of an `asgi' application: its startup
%%     runs before start_link returns, its shutdown when the context stops
%%     (before the port exits), and the `state' it fills is copied into
%%     each request's scope. A `lifespan.startup.failed' event, or with
%%     `on' an exception, makes start_link return
%%     `{error, {lifespan_startup_failed, Message}}' (`Message' a binary);
%%     with `auto' an application that raises on the scope before sending
%%     anything is served without lifespan; `off' never sends it.</dd>
%% <dt>`max_request_line', `max_header_block', `max_header_count',
%%     `max_body_size' (`pos_integer()', bytes or a count)</dt>
%% <dd>HTTP limits of a WSGI context (defaults 8192, 65536, 100 and
%%     1073741824): over them a request gets 414, 431, 431 or 413.</dd>
%% <dt>`keepalive_timeout', `header_timeout' (`pos_integer()', milliseconds,
%%     defaults 5000 and 10000)</dt>
%% <dd>How long an idle keep-alive connection is kept, and how long a
%%     request head may take from its first byte (then 408).</dd>
%% <dt>`threads' (`pos_integer()', default 8)</dt>
%% <dd>Threads that run the WSGI application's calls. Not used by ASGI,
%%     whose requests run as tasks on the context's asyncio loop.</dd>
%% <dt>`access_log' (`boolean()', default `false')</dt>
%% <dd>One `info' log line per HTTP request.</dd>
%% <dt>`multiprocess' (`boolean()', default `false')</dt>
%% <dd>`wsgi.multiprocess' in a WSGI application's `environ': whether
%%     other processes (other contexts) serve the same application at the
%%     same time. A listener ({@link py_reactor}) with more than one context
%%     sets it to `true' for its contexts.</dd>
%% <dt>`idle_timeout' (`timeout()', milliseconds, default `infinity')</dt>
%% <dd>A connection with no readiness event (nothing to read, no write
%%     completed) for that long is closed by the port: `connection_lost()'
%%     runs and the connection ends with reason `idle_timeout'.</dd>
%% <dt>`python_path' (`[file:filename_all()]', default `[]')</dt>
%% <dd>Directories prepended to `sys.path' (made absolute).</dd>
%% <dt>`name' (`atom()')</dt>
%% <dd>Registers the context process locally under this name.</dd>
%% <dt>`default' (`boolean()', default `false')</dt>
%% <dd>Registers the context as `py_reactor_context_default', the context
%%     {@link handoff/2} uses.</dd>
%% <dt>`start_timeout' (`timeout()', default 30000)</dt>
%% <dd>Milliseconds allowed for the whole start: the port saying `hello'
%%     and the Python setup finishing. Past it, the port is killed at once
%%     and start_link returns `{error, {timeout, hello | setup}}'.</dd>
%% <dt>`stop_timeout' (`timeout()', default 5000)</dt>
%% <dd>Milliseconds allowed for the port to close its connections and exit
%%     when the context stops; past it the port's OS process is killed
%%     (`SIGKILL').</dd>
%% <dt>`port_executable' (`file:filename_all()')</dt>
%% <dd>The port program; default `priv/py_reactor_port' of this
%%     application.</dd>
%% <dt>`env' (`[{string(), string() | false}]', default `[]')</dt>
%% <dd>Environment of the port program, as the `env' option of
%%     `open_port/2'.</dd>
%% <dt>`record' (`file:filename_all()')</dt>
%% <dd>The port writes every frame in both directions, with times, to this
%%     file (`serve --record'); see `docs/recording.md' and
%%     {@link py_reactor_recording:read/1}. Off by default.</dd>
%% <dt>`record_bytes' (`boolean()', default `false')</dt>
%% <dd>With `record': also every byte read from and written to each
%%     protocol connection (`--record-bytes'); the connections of a WSGI or
%%     ASGI application are not recorded byte by byte, and the port logs a
%%     warning saying so.</dd>
%% <dt>`python' (`file:filename_all()')</dt>
%% <dd>A Python executable, typically a virtualenv's `bin/python' (a name
%%     without a slash is looked up on `PATH'). The context's interpreter
%%     takes on its environment: its `sys.prefix', its `site-packages' and
%%     their `.pth' files, as when that executable runs. It must be of the
%%     minor version the port was built for: another gives
%%     `{error, {python_version_mismatch, Built, Found}}' (both
%%     `{Major, Minor}'), one that cannot be run
%%     `{error, {python_not_runnable, Path, Text}}'. Without it the
%%     interpreter is the one the port was built against.</dd>
%% </dl>
%%
%% Unknown options are refused: `{error, {unknown_option, Key}}'; a bad value
%% gives `{error, {bad_option, {Key, Value}}}'; options that are not a map,
%% `{error, {bad_argument, {opts, Opts}}}'. A `python_path' entry that is not
%% a readable directory gives `{error, {bad_python_path, Dir, Posix}}', and
%% `app_callable' without `app_module'
%% `{error, {app_callable_without_app_module, Name}}' (see
%% {@link py_reactor_opts}). Every function answers arguments of the wrong
%% shape with `{error, {bad_argument, {Name, Value}}}' and a context that is
%% not alive with `{error, no_reactor_context}' (`stop/1': `ok').
%%
%% == Logging ==
%%
%% Every log event of the context carries the metadata
%% `#{py_reactor_context => Id, domain => [py_reactor]}'. Lines Python writes
%% to `sys.stdout' are logged at `info', to `sys.stderr' at `warning'; a
%% traceback that closed a connection is logged once, at `error', by the port
%% (the `closed' notice that follows is logged at `debug' only). Bad frames,
%% refused descriptors and unknown messages are logged at `error'. OTP's
%% `default' handler drops events of domains it does not know: the first
%% context (or the application's start) adds a filter that lets this domain
%% through, see {@link py_reactor_log}.
%%
%% == Failure ==
%%
%% If the port program exits while the context is not stopping, the context
%% process exits with `{port_exited, Status}' (the program exited by itself) or
%% `{port_killed, Signal}' (it was killed by a signal: `sigsegv', `sigkill',
%% `sigabrt', ... by Linux numbering, or the signal's number); callers
%% waiting for a reply get `{error, Reason}' with the same reason. The context
%% traps exits: when it stops for any reason, its port is stopped and, past
%% `stop_timeout', killed. A port never outlives its context.
-module(py_reactor_context).
-behaviour(gen_server).

%% This module is the API and the process: it keeps the context's state
%% (connections, pending requests, counts) and dispatches what the port
%% sends. The other roles have modules of their own: option and argument
%% checks (py_reactor_opts), the port program's start and end
%% (py_reactor_port_program) and exit reasons (py_reactor_port_exit),
%% frames (py_reactor_frame), descriptor passing (py_reactor_aux_socket),
%% the VM's sockets and client info (py_reactor_socket), term bounds
%% (py_reactor_term), statistics (py_reactor_stats), log lines
%% (py_reactor_log), Python's requests to the VM (py_reactor_vm).

%% API.
-export([start_link/2, start_link/3, child_spec/1]).
-export([handoff/2, handoff/3, handoff_socket/3]).
-export([stats/1, stats/2, stop/1]).
-export([exec/2, exec/3, eval/2, eval/3, call/4, call/5]).
-export([listen/3, listen_control/2]).

%% proc_lib.
-export([init/4]).

%% gen_server.
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2,
         code_change/3]).

-export_type([mode/0, opts/0, server/0, client_info/0, stats/0,
              python_error/0, child_args/0]).

-include_lib("kernel/include/logger.hrl").

-define(DEFAULT_NAME, py_reactor_context_default).
-define(DEFAULT_CALL_TIMEOUT, 30000).
-define(DEFAULT_STATS_TIMEOUT, 5000).

-type mode() :: worker | subinterp | owngil.

-type opts() :: #{max_connections => pos_integer(),
                  setup_code => unicode:chardata(),
                  app_module => atom() | unicode:chardata(),
                  app_callable => atom() | unicode:chardata(),
                  app_interface => auto | wsgi | asgi | protocol,
                  lifespan => auto | on | off,
                  max_request_line => pos_integer(),
                  max_header_block => pos_integer(),
                  max_header_count => pos_integer(),
                  max_body_size => pos_integer(),
                  keepalive_timeout => pos_integer(),
                  header_timeout => pos_integer(),
                  threads => pos_integer(),
                  access_log => boolean(),
                  multiprocess => boolean(),
                  python_path => [file:filename_all()],
                  idle_timeout => timeout(),
                  name => atom(),
                  default => boolean(),
                  start_timeout => timeout(),
                  stop_timeout => timeout(),
                  port_executable => file:filename_all(),
                  env => [{string(), string() | false}],
                  record => file:filename_all(),
                  record_bytes => boolean(),
                  listener => py_reactor_server:slot(),
                  python => file:filename_all()}.

-type server() :: pid() | atom().
%% A context: its pid or its registered name.

-type client_info() :: #{term() => term()}.
%% What Python's `connection_made' receives as `client_info' (a dict).
%% Keys and values must have a Python form (see `docs/protocol.md': numbers,
%% binaries, atoms, lists, tuples, maps, pids).

-type stats() :: #{id := term(),
                   mode := mode(),
                   os_pid := non_neg_integer(),
                   max_connections := pos_integer(),
                   active_connections := non_neg_integer(),
                   total_connections := non_neg_integer(),
                   refused_handoffs := non_neg_integer(),
                   total_requests := non_neg_integer(),
                   bytes_in := non_neg_integer(),
                   bytes_out := non_neg_integer(),
                   python_errors := non_neg_integer(),
                   atom() => term()}.

-type python_error() :: {python, Type :: binary(), Message :: binary(),
                         Traceback :: binary()}.

-type child_args() :: #{id := term(),
                        mode => mode(),
                        opts => opts(),
                        restart => permanent | transient | temporary,
                        shutdown => brutal_kill | timeout()}.

-type request_kind() :: stats | exec | eval | call | listen_control.

-record(state, {
    id :: term(),
    mode :: mode(),
    port :: port() | undefined,
    os_pid :: non_neg_integer(),
    sock :: socket:socket() | undefined,
    max_connections :: pos_integer(),
    stop_timeout :: timeout(),
    max_frame :: pos_integer(),
    set_up = false :: boolean(),
    next_conn_id = 1 :: pos_integer(),
    next_ref = 1 :: pos_integer(),
    conns = #{} :: #{pos_integer() => true},
    total = 0 :: non_neg_integer(),
    refused = 0 :: non_neg_integer(),
    requests = #{} :: #{pos_integer() => {request_kind(), gen_server:from()}},
    %% The slot of the py_reactor listener this context serves, if any: its
    %% open connections are counted there too.
    listener :: py_reactor_server:slot() | undefined
}).

-type state() :: #state{}.

%% API.

%% @equiv start_link(Id, Mode, #{})
-spec start_link(term(), mode()) -> {ok, pid()} | {error, term()}.
start_link(Id, Mode) ->
    start_link(Id, Mode, #{}).

%% @doc Starts a context linked to the caller.
%%
%% Returns `{ok, Pid}' once the port program has said `hello', the auxiliary
%% socket is connected and the Python setup (`python_path', `setup_code',
%% `app_module', `app_callable') has succeeded. When the setup raises, returns
%% `{error, {python, Type, Message, Traceback}}' (three binaries); the context
%% process has then exited normally, so the caller is not killed, and the port
%% program is gone. Other errors: `{error, {bad_mode, Mode}}',
%% `{error, {unknown_option, Key}}', `{error, {bad_option, {Key, Value}}}',
%% `{error, {already_started, Pid}}' (the `name', or `default', is taken),
%% `{error, {timeout, hello | setup}}', `{error, {port_exited, Status}}',
%% `{error, {port_killed, Signal}}', `{error, {open_port, Reason, Path}}',
%% and for the `python' option `{error, {python_version_mismatch, Built,
%% Found}}' and `{error, {python_not_runnable, Path, Text}}'.
%%
%% `Id' is any term; the specification uses positive integers. It names the
%% context in its logs and in {@link stats/1}.
-spec start_link(term(), mode(), opts()) -> {ok, pid()} | {error, term()}.
start_link(Id, Mode, Opts) ->
    case py_reactor_opts:check_context(Mode, Opts) of
        {ok, Opts1} -> proc_lib:start_link(?MODULE, init, [self(), Id, Mode, Opts1]);
        {error, Reason} -> {error, Reason}
    end.

%% @doc A child spec for a context, to put it in your own supervisor.
%%
%% `id' is the context id; the child id is `{py_reactor_context, Id}'.
%% `mode' defaults to `worker', `opts' to `#{}', `restart' to `transient' (a
%% context stopped with {@link stop/1} stays stopped, a context whose port
%% died is restarted) and `shutdown' to the `stop_timeout' option plus 2000
%% milliseconds.
-spec child_spec(child_args()) -> supervisor:child_spec() | {error, term()}.
child_spec(Args) when not is_map(Args); not is_map_key(id, Args) ->
    {error, {bad_argument, {child_args, Args}}};
child_spec(Args = #{id := Id}) ->
    Mode = maps:get(mode, Args, worker),
    Opts = maps:get(opts, Args, #{}),
    Shutdown = case is_map(Opts) andalso maps:get(stop_timeout, Opts, 5000) of
        infinity -> infinity;
        StopTimeout when is_integer(StopTimeout) -> StopTimeout + 2000;
        _NotChecked -> 7000 % start_link/3 returns the error.
    end,
    #{id => {?MODULE, Id},
      start => {?MODULE, start_link, [Id, Mode, Opts]},
      restart => maps:get(restart, Args, transient),
      shutdown => maps:get(shutdown, Args, Shutdown),
      type => worker,
      modules => [?MODULE]}.

%% @doc Hands `Fd' off to the default context, the one started with
%% `default => true' (registered as `py_reactor_context_default').
%%
%% Returns `{error, no_reactor_context}' when there is none. Otherwise as
%% {@link handoff/3}.
-spec handoff(non_neg_integer(), client_info()) -> ok | {error, term()}.
handoff(Fd, ClientInfo) ->
    handoff(?DEFAULT_NAME, Fd, ClientInfo).

%% @doc Hands the descriptor `Fd' off to the context `Ctx'.
%%
%% The descriptor is duplicated into the port program before this function
%% returns `ok': the caller may then close its own socket (and should, or the
%% VM keeps a descriptor per connection). Keep the socket open until this
%% function has returned. A descriptor made by {@link py:dup_fd/1} is closed
%% in the VM by the time this function returns `ok': it belongs to the
%% reactor. The port closes the connection's descriptor when
%% the protocol closes it, and shuts the connection down so that the peer sees
%% the close whatever the VM does with its copy.
%%
%% The port's Python protocol receives `ClientInfo' with two more keys:
%% `reactor_pid' (the context's pid) and `conn_id' (the connection's id). An
%% `addr' given as a string or as an IP address tuple is passed as a binary.
%%
%% Once `ok' is returned the port may still refuse the descriptor; it then
%% closes it and the refusal is logged at `warning' and counted in
%% `refused_handoffs': `{error, emfile}' (the port is out of descriptors),
%% `listening_socket' or `not_connected' (not a connection: the descriptor
%% is left as it was, so a listening socket handed off by mistake keeps
%% accepting).
%%
%% Errors (nothing has been sent to the port):
%% `{error, max_connections}' when `max_connections' connections are open
%% (counted in `refused_handoffs');
%% `{error, no_reactor_context}' when `Ctx' is not alive;
%% `{error, {context_exited, Reason}}' when it stopped during the call;
%% `{error, {bad_client_info, ClientInfo}}' when a term has no Python form;
%% `{error, {bad_term, Why}}' when `ClientInfo' is more than the port
%% decodes (`Why': `{too_deep, 256}', `{too_many_terms, 1048576}' or
%% `{too_large, Size, MaxFrame}', see {@link py_reactor_term});
%% `{error, {aux_socket, Posix}}' when the descriptor could not be passed
%% (`ebadf' for a closed descriptor, for instance).
-spec handoff(server(), non_neg_integer(), client_info()) -> ok | {error, term()}.
handoff(Ctx, Fd, ClientInfo) ->
    case handoff(Ctx, Fd, ClientInfo, <<>>) of
        ok ->
            %% A descriptor made by py:dup_fd/1 belongs to the reactor now:
            %% the VM's copy is closed.
            py_reactor_dup:handed_off(Fd);
        Error ->
            Error
    end.

handoff(Ctx, Fd, ClientInfo, InitialData) ->
    case py_reactor_opts:check_args([{ctx, Ctx}, {fd, Fd}, {client_info, ClientInfo}]) of
        ok ->
            case py_reactor_socket:client_info(ClientInfo) of
                {ok, ClientInfo1} ->
                    %% The frame as do_handoff/4 builds it, with leaves in place of
                    %% the pid and the id: what the port will decode.
                    Frame = {handoff, 0, ClientInfo1#{reactor_pid => 0, conn_id => 0}},
                    case py_reactor_term:check(Frame) of
                        ok -> safe_call(Ctx, {handoff, Fd, ClientInfo1, InitialData}, infinity);
                        {error, Why} -> {error, {bad_term, Why}}
                    end;
                {error, Reason} ->
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Hands a connected `gen_tcp' socket (or an OTP `socket' stream socket)
%% off to the context `Ctx'.
%%
%% Takes the descriptor with `inet:getfd/1' (`socket:getopt(S, otp, fd)'),
%% adds `addr' (a binary such as `<<"127.0.0.1">>'), `port' and `type' (`tcp',
%% or `unix' for a local socket) from the peer's address (keys given in
%% `ClientInfo' win), hands the descriptor off with {@link handoff/3}, and on
%% `ok' closes the VM's socket. On `{error, Reason}' the socket is left open:
%% the caller still owns it and must close it (or try another context).
%%
%% Nothing the client sent is lost, whatever the socket's `active' mode:
%% a `gen_tcp' socket is made passive, and the bytes the VM has already
%% received for it (the caller's `{tcp, Socket, Data}' messages, so the caller
%% must be its controlling process, and what the driver holds) are given to
%% the protocol as its first `data_received', before anything the port reads
%% (see {@link py_reactor_socket}). If the handoff is refused, those bytes go
%% back to the caller's mailbox as one `{tcp, Socket, Data}' message and the
%% `active' option is restored. A `gen_tcp' socket with a `packet' option
%% other than `raw' is refused with `{error, {packet, Type}}'.
%% `gen_tcp' sockets of the `socket' backend (`{inet_backend, socket}') have
%% no `inet:getfd/1' and are refused with `{error, {getfd, Reason}}'. A
%% `Socket' that is no socket at all gives
%% `{error, {bad_argument, {socket, Socket}}}'.
-spec handoff_socket(server(), gen_tcp:socket() | socket:socket(), client_info())
    -> ok | {error, term()}.
handoff_socket(Ctx, Socket, ClientInfo) ->
    case py_reactor_opts:check_args([{ctx, Ctx}, {socket, Socket},
                                     {client_info, ClientInfo}]) of
        ok -> handoff_socket1(Ctx, Socket, ClientInfo);
        {error, Reason} -> {error, Reason}
    end.

handoff_socket1(Ctx, {'$socket', _} = Socket, ClientInfo) ->
    handoff_socket2(Ctx, Socket, ClientInfo, <<>>);
handoff_socket1(Ctx, Socket, ClientInfo) ->
    case py_reactor_socket:take_received(Socket) of
        {ok, Data, Taken} ->
            case handoff_socket2(Ctx, Socket, ClientInfo, Data) of
                ok ->
                    ok;
                {error, Reason} ->
                    ok = py_reactor_socket:put_back(Socket, Taken),
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

handoff_socket2(Ctx, Socket, ClientInfo, Data) ->
    case py_reactor_socket:fd_and_peer(Socket) of
        {ok, Fd, PeerInfo} ->
            case handoff(Ctx, Fd, maps:merge(PeerInfo, ClientInfo), Data) of
                ok ->
                    ok = py_reactor_socket:close(Socket);
                {error, Reason} ->
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @equiv stats(Ctx, 5000)
-spec stats(server()) -> stats() | {error, term()}.
stats(Ctx) ->
    stats(Ctx, ?DEFAULT_STATS_TIMEOUT).

%% @doc The context's statistics.
%%
%% `id', `mode', `os_pid' (of the port program), `max_connections',
%% `active_connections' and `total_connections' (the context's own exact
%% counts: a connection is active from its handoff until the port reports it
%% closed), `refused_handoffs' (refused by the context, plus any refused by
%% the port's own limit), and, from the port, `total_requests' (HTTP requests of a WSGI context, calls of
%% `data_received'), `bytes_in', `bytes_out', `python_errors' and
%% `pending_fds'. `python_errors' counts the connections closed by a fault
%% of the protocol: an exception raised by the factory or a callback
%% (`connection_made', `data_received', `write_ready', `connection_lost'), or
%% a callback returning something that is not an action (`bad_action').
%%
%% Errors, as for {@link exec/3}: `{error, no_reactor_context}' when `Ctx'
%% is not alive, `{error, timeout}' when it does not answer within
%% `Timeout', `{error, {bad_argument, {Name, Value}}}'.
-spec stats(server(), timeout()) -> stats() | {error, term()}.
stats(Ctx, Timeout) ->
    case py_reactor_opts:check_args([{ctx, Ctx}, {timeout, Timeout}]) of
        ok ->
            case request(Ctx, stats, [], Timeout) of
                {ok, Stats} -> Stats;
                {error, Reason} -> {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Stops the context: the port calls `connection_lost()' for every open
%% connection, closes them and exits; the context process then exits
%% normally.
%%
%% Waits for the port program to exit; if it has not within the context's
%% `stop_timeout', kills it. Returns `ok', also when the context was not
%% alive. A context supervised with restart `permanent' is restarted by its
%% supervisor; stop a context of {@link py_reactor_sup} with
%% {@link py_reactor_sup:stop_context/1}.
%% A `Ctx' that is neither a pid nor an atom gives
%% `{error, {bad_argument, {ctx, Ctx}}}'.
-spec stop(server()) -> ok | {error, term()}.
stop(Ctx) ->
    case py_reactor_opts:check_args([{ctx, Ctx}]) of
        ok ->
            try
                gen_server:stop(Ctx, normal, infinity)
            catch
                exit:noproc -> ok;
                exit:normal -> ok % It stopped by itself meanwhile.
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% @equiv exec(Ctx, Code, 30000)
-spec exec(server(), unicode:chardata()) -> ok | {error, term()}.
exec(Ctx, Code) ->
    exec(Ctx, Code, ?DEFAULT_CALL_TIMEOUT).

%% @doc Runs Python statements in the context's `__main__' namespace.
%%
%% Names bound by `setup_code' and earlier `exec' calls are visible. Returns
%% `{error, {python, Type, Message, Traceback}}' when the code raises,
%% `{error, timeout}' when no reply came within `Timeout' milliseconds (the
%% code may still be running: the port runs one thing at a time, so
%% connections wait too), `{error, no_reactor_context}' when `Ctx' is not
%% alive, `{error, {port_exited | port_killed, _}}' when the port died.
-spec exec(server(), unicode:chardata(), timeout()) -> ok | {error, term()}.
exec(Ctx, Code, Timeout) ->
    checked_request(Ctx, exec, [{code, Code}], [], Timeout).

%% @equiv eval(Ctx, Expr, 30000)
-spec eval(server(), unicode:chardata()) -> {ok, term()} | {error, term()}.
eval(Ctx, Expr) ->
    eval(Ctx, Expr, ?DEFAULT_CALL_TIMEOUT).

%% @doc Evaluates a Python expression in the context's `__main__' namespace
%% and returns its value as an Erlang term (`str' and `bytes' as binaries,
%% `None' as `none', ...; see `docs/protocol.md'). A value with no Erlang
%% form gives `{error, {unconvertible, Text}}'. Other errors as
%% {@link exec/3}.
-spec eval(server(), unicode:chardata(), timeout()) -> {ok, term()} | {error, term()}.
eval(Ctx, Expr, Timeout) ->
    checked_request(Ctx, eval, [{expr, Expr}], [], Timeout).

%% @equiv call(Ctx, Module, Function, Args, 30000)
-spec call(server(), atom() | unicode:chardata(), atom() | unicode:chardata(), [term()])
    -> {ok, term()} | {error, term()}.
call(Ctx, Module, Function, Args) ->
    call(Ctx, Module, Function, Args, ?DEFAULT_CALL_TIMEOUT).

%% @doc Calls `Module.Function(*Args)' in the context's interpreter
%% (`Module' is imported; `'__main__'' reaches what `exec' defined).
%%
%% `Args' are converted to Python values; a term with no Python form (a
%% reference, ...) gives `{error, {bad_request, Text}}', and arguments more
%% than the port decodes give `{error, {bad_term, Why}}' at once (see
%% {@link handoff/3}). `Timeout' is
%% in milliseconds or `infinity'. Results and other errors as {@link eval/3}.
%%
%% A coroutine function runs as a task on the context's asyncio loop: the
%% call returns when the task completes, and the context goes on serving
%% meanwhile (`docs/asyncio.md').
%%
%% An argument `{fd, Fd}' (a descriptor of the VM), or a connected `gen_tcp'
%% or `socket' socket, is passed over the auxiliary socket as handoffs are:
%% Python gets the port's own descriptor number for it and owns it from then
%% on (a socket's VM copy is closed once it has been passed). An argument
%% that cannot be passed gives `{error, {getfd, Reason}}' or
%% `{error, {aux_socket, Reason}}'.
-spec call(server(), atom() | unicode:chardata(), atom() | unicode:chardata(), [term()],
           timeout()) -> {ok, term()} | {error, term()}.
call(Ctx, Module, Function, Args, Timeout) ->
    case py_reactor_opts:check_args([{args, Args}]) of
        ok -> call_with_fds(Ctx, Module, Function, Args, Timeout);
        {error, Reason} -> {error, Reason}
    end.

call_with_fds(Ctx, Module, Function, Args, Timeout) ->
    Names = [{module, Module}, {function, Function}],
    case call_fds(Args, 0, [], []) of
        {ok, _, []} ->
            checked_request(Ctx, call, Names, [Args], Timeout);
        {ok, Args1, Fds} ->
            case safe_call(Ctx, {send_fds, [Fd || {_, Fd, _} <- Fds]}, infinity) of
                {ok, Ids} ->
                    _ = [py_reactor_socket:close(S) || {_, _, S} <- Fds, S =/= none],
                    FdArgs = [{Index, Id} || {{Index, _, _}, Id} <- lists:zip(Fds, Ids)],
                    checked_request(Ctx, call, Names, [Args1, FdArgs], Timeout);
                {error, Reason} ->
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% The arguments of a call that are descriptors: `{ok, Args, [{Index, Fd,
%% Socket | none}]}', each such argument replaced by `undefined' (the port
%% puts its own descriptor number in its place).
call_fds([], _Index, Args, Fds) ->
    {ok, lists:reverse(Args), lists:reverse(Fds)};
call_fds([{fd, Fd} | Rest], Index, Args, Fds) when is_integer(Fd), Fd >= 0 ->
    call_fds(Rest, Index + 1, [undefined | Args], [{Index, Fd, none} | Fds]);
call_fds([Arg | Rest], Index, Args, Fds) ->
    case py_reactor_socket:is_socket(Arg) of
        true ->
            case py_reactor_socket:fd_and_peer(Arg) of
                {ok, Fd, _Peer} ->
                    call_fds(Rest, Index + 1, [undefined | Args], [{Index, Fd, Arg} | Fds]);
                {error, Reason} ->
                    {error, Reason}
            end;
        false ->
            call_fds(Rest, Index + 1, [Arg | Args], Fds)
    end.

%% @doc Gives the port a duplicate of the listening socket `Fd' to accept
%% on itself (a listener's `accept => port'; see `docs/protocol.md',
%% `listen'). `Opts': `max_connections' (the port's share of the listener's
%% limit, 0 for none) and `paused' (`true': do not accept yet). The port
%% reports each connection it accepts; they count as handed off.
-spec listen(server(), non_neg_integer(), #{max_connections := non_neg_integer(),
                                             paused := boolean()}) -> ok | {error, term()}.
listen(Ctx, Fd, Opts) ->
    safe_call(Ctx, {listen, Fd, Opts}, infinity).

%% @doc Changes the share and the pause of a port that accepts itself (see
%% {@link listen/3}).
-spec listen_control(server(), #{max_connections := non_neg_integer(),
                                 paused := boolean()}) -> ok | {error, term()}.
listen_control(Ctx, Opts) ->
    safe_call(Ctx, {listen_control, Opts}, infinity).

%% proc_lib.

%% @private
-spec init(pid(), term(), mode(), map()) -> no_return().
init(Parent, Id, Mode, Opts) ->
    process_flag(trap_exit, true),
    ok = py_reactor_log:ensure_visible(),
    logger:set_process_metadata(#{py_reactor_context => Id, domain => [py_reactor]}),
    case register_names(Opts) of
        ok ->
            case start_port(Id, Mode, Opts) of
                {ok, State} ->
                    proc_lib:init_ack(Parent, {ok, self()}),
                    gen_server:enter_loop(?MODULE, [], State);
                {error, Reason} ->
                    proc_lib:init_ack(Parent, {error, Reason}),
                    exit(normal)
            end;
        {error, Reason} ->
            proc_lib:init_ack(Parent, {error, Reason}),
            exit(normal)
    end.

%% gen_server.

%% @private Not used: contexts start with proc_lib (see start_link/3).
-spec init(term()) -> {stop, {not_supported, term()}}.
init(Args) ->
    {stop, {not_supported, Args}}.

%% @private
-spec handle_call(term(), gen_server:from(), state())
    -> {reply, term(), state()} | {noreply, state()}.
handle_call({handoff, Fd, ClientInfo}, From, State) ->
    handle_call({handoff, Fd, ClientInfo, <<>>}, From, State);
handle_call({handoff, _Fd, _ClientInfo, _Data}, _From,
            State = #state{conns = Conns, max_connections = Max, refused = Refused})
        when map_size(Conns) >= Max ->
    {reply, {error, max_connections}, State#state{refused = Refused + 1}};
handle_call({handoff, Fd, ClientInfo, Data}, _From, State) ->
    {Reply, State1} = do_handoff(Fd, ClientInfo, Data, State),
    {reply, Reply, State1};
handle_call({request, Kind, Args}, From, State) ->
    do_request(Kind, Args, From, State);
handle_call({send_fds, Fds}, _From, State) ->
    {Reply, State1} = send_call_fds(Fds, [], State),
    {reply, Reply, State1};
handle_call({listen, Fd, Opts}, _From, State) ->
    {Reply, State1} = do_listen(Fd, Opts, State),
    {reply, Reply, State1};
handle_call({listen_control, Opts}, From, State) ->
    %% Answered once the port has applied it: a suspend is then in force.
    do_request(listen_control, [Opts], From, State);
handle_call(Request, From, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: unexpected call ~0p from ~0p",
               [State#state.id, Request, From]),
    {reply, {error, {unexpected_call, Request}}, State}.

%% @private
-spec handle_cast(term(), state()) -> {noreply, state()}.
handle_cast(Msg, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: unexpected cast ~0p", [State#state.id, Msg]),
    {noreply, State}.

%% @private
-spec handle_info(term(), state()) -> {noreply, state()} | {stop, term(), state()}.
handle_info({Port, {data, Frame}}, State = #state{port = Port}) ->
    {noreply, handle_frame(Frame, State)};
handle_info({Port, {exit_status, Status}}, State = #state{port = Port}) ->
    {stop, py_reactor_port_exit:reason(Status), State#state{port = undefined}};
handle_info({'EXIT', Port, Reason}, State = #state{port = Port}) ->
    %% The port closed without its exit status.
    {stop, py_reactor_port_program:closed_reason(Port, Reason), State#state{port = undefined}};
handle_info({py_reactor_vm_reply, Id, Result}, State) ->
    ok = send_vm_reply(Id, Result, State),
    {noreply, State};
handle_info({'EXIT', _Pid, normal}, State) ->
    {noreply, State};
handle_info({'EXIT', _Pid, Reason}, State) ->
    %% A process linked to the context died: die with it, as an untrapped
    %% link would.
    {stop, Reason, State};
handle_info(Info, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: unexpected message ~0p", [State#state.id, Info]),
    {noreply, State}.

%% @private
-spec terminate(term(), state()) -> ok.
terminate(Reason, State) ->
    State1 = shutdown_port(State),
    ok = py_reactor_aux_socket:close(State1#state.sock),
    ok = count_listener(lost, State1),
    ReplyReason = py_reactor_port_exit:caller_reason(Reason),
    _ = [gen_server:reply(From, {error, ReplyReason})
         || {_Kind, From} <- maps:values(State1#state.requests)],
    ok.

%% @private
-spec code_change(term(), state(), term()) -> {ok, state()}.
code_change(_OldVsn, State, _Extra) ->
    {ok, State}.

%% Internal: starting.

register_names(Opts) ->
    Names = [Name || Name <- [maps:get(name, Opts, undefined)], Name =/= undefined]
        ++ [?DEFAULT_NAME || maps:get(default, Opts)],
    register_names1(Names).

register_names1([]) ->
    ok;
register_names1([Name | Rest]) ->
    try register(Name, self()) of
        true -> register_names1(Rest)
    catch
        error:badarg ->
            {error, {already_started, whereis(Name)}}
    end.

start_port(Id, Mode, Opts) ->
    Deadline = py_reactor_port_program:deadline(maps:get(start_timeout, Opts)),
    case py_reactor_port_program:open(Opts) of
        {ok, Port, OsPid} ->
            State = #state{id = Id, mode = Mode, port = Port, os_pid = OsPid,
                           max_frame = py_reactor_frame:default_max(),
                           listener = maps:get(listener, Opts, undefined),
                           max_connections = maps:get(max_connections, Opts),
                           stop_timeout = maps:get(stop_timeout, Opts)},
            case handshake(Opts, Deadline, State) of
                {ok, State1} ->
                    {ok, State1};
                {error, {timeout, Stage} = Reason, State1} ->
                    %% start_timeout bounds the whole start: a port that has
                    %% not said hello or finished its setup by now is stuck
                    %% (in Python, most likely) and gets no more time.
                    ?LOG_WARNING("py_reactor_context ~0p: the port program (os pid ~b) did not "
                                 "finish its ~0p within start_timeout; killing it",
                                 [Id, OsPid, Stage]),
                    ok = kill_port(State1),
                    ok = py_reactor_aux_socket:close(State1#state.sock),
                    {error, Reason};
                {error, Reason, State1} ->
                    _ = shutdown_port(State1),
                    ok = py_reactor_aux_socket:close(State1#state.sock),
                    {error, Reason}
            end;
        {error, Reason} ->
            {error, Reason}
    end.

%% The port's hello, the auxiliary socket, then the Python setup; frames
%% that come meanwhile are handled as they are once the context runs.
handshake(Opts, Deadline, State0 = #state{port = Port}) ->
    case py_reactor_port_program:await_hello(Port, Deadline, fun handle_frame/2, State0) of
        {ok, Hello, State1} ->
            MaxFrame = maps:get(max_frame, Hello, State1#state.max_frame),
            State2 = State1#state{max_frame = MaxFrame},
            case py_reactor_aux_socket:connect(maps:get(socket_path, Hello)) of
                {ok, Sock} ->
                    setup(Opts, Deadline, State2#state{sock = Sock});
                {error, Reason} ->
                    {error, Reason, State2}
            end;
        {exited, Reason, State1} ->
            {error, Reason, State1#state{port = undefined}};
        {error, Reason, State1} ->
            {error, Reason, State1}
    end.

setup(Opts, Deadline, State = #state{id = Id, port = Port, next_ref = Ref}) ->
    case send_frame(py_reactor_port_program:setup_request(Ref, Id, Opts), State) of
        ok ->
            State1 = State#state{next_ref = Ref + 1},
            case py_reactor_port_program:await_reply(Port, Ref, Deadline, fun handle_frame/2,
                                                     State1) of
                {reply, ok, State2} ->
                    {ok, State2#state{set_up = true}};
                {reply, {error, Reason}, State2} ->
                    {error, Reason, State2};
                {reply, Other, State2} ->
                    {error, {bad_reply, Other}, State2};
                {timeout, State2} ->
                    {error, {timeout, setup}, State2};
                {exited, Reason, State2} ->
                    {error, Reason, State2#state{port = undefined}}
            end;
        {error, Reason} ->
            {error, Reason, State}
    end.

%% Internal: stopping.

%% Ends the port program, whatever state it is in, and returns once its OS
%% process is gone. Before a successful setup the port would answer `stop'
%% with not_set_up: it is closed instead.
shutdown_port(State = #state{port = undefined}) ->
    State;
shutdown_port(State = #state{set_up = SetUp, next_ref = Ref, stop_timeout = Timeout}) ->
    StopRef = case SetUp of
        true -> Ref;
        false -> none
    end,
    State1 = py_reactor_port_program:stop(program(State), StopRef, Timeout,
                                          fun handle_frame/2, State#state{next_ref = Ref + 1}),
    State1#state{port = undefined}.

%% Kills the port program at once and waits (briefly) for it to be gone.
kill_port(#state{port = undefined}) ->
    ok;
kill_port(State) ->
    py_reactor_port_program:kill(program(State)).

program(#state{id = Id, port = Port, os_pid = OsPid, max_frame = MaxFrame}) ->
    #{context => Id, port => Port, os_pid => OsPid, max_frame => MaxFrame}.

%% Internal: handoff and requests.

do_handoff(Fd, ClientInfo, Data, State = #state{sock = Sock, next_conn_id = ConnId,
                                          conns = Conns, total = Total}) ->
    %% Counted before the port can serve it: a listener places the next
    %% connection by these counts.
    ok = count_listener(opened, State),
    case py_reactor_aux_socket:send_fd(Sock, ConnId, Fd) of
        ok ->
            ClientInfo1 = ClientInfo#{reactor_pid => self(), conn_id => ConnId},
            State1 = State#state{next_conn_id = ConnId + 1},
            Frame = case Data of
                <<>> -> {handoff, ConnId, ClientInfo1};
                _ -> {handoff, ConnId, ClientInfo1, Data}
            end,
            case send_frame(Frame, State1) of
                ok ->
                    {ok, State1#state{conns = Conns#{ConnId => true}, total = Total + 1}};
                {error, Reason} ->
                    ok = count_listener(undone, State1),
                    {{error, Reason}, State1}
            end;
        {error, Reason} ->
            ok = count_listener(undone, State),
            {{error, {aux_socket, Reason}}, State}
    end.

%% Descriptors of a call's arguments go over the auxiliary socket tagged
%% with fresh connection ids, which the call request then names.
send_call_fds([], Ids, State) ->
    {{ok, lists:reverse(Ids)}, State};
send_call_fds(_Fds, _Ids, State = #state{sock = undefined}) ->
    {{error, {aux_socket, closed}}, State};
send_call_fds([Fd | Rest], Ids, State = #state{sock = Sock, next_conn_id = Id}) ->
    case py_reactor_aux_socket:send_fd(Sock, Id, Fd) of
        ok -> send_call_fds(Rest, [Id | Ids], State#state{next_conn_id = Id + 1});
        {error, Reason} -> {{error, {aux_socket, Reason}}, State}
    end.

%% The listening socket goes under an id of the handoffs' space, with its own
%% message, so the port never takes it for a connection.
do_listen(Fd, Opts, State = #state{sock = Sock, next_conn_id = Id}) ->
    case py_reactor_aux_socket:send_fd(Sock, Id, Fd) of
        ok ->
            State1 = State#state{next_conn_id = Id + 1},
            {send_frame({listen, Id, Opts#{reactor_pid => self()}}, State1), State1};
        {error, Reason} ->
            {{error, {aux_socket, Reason}}, State}
    end.

count_listener(_Event, #state{listener = undefined}) ->
    ok;
count_listener(opened, #state{listener = Slot}) ->
    py_reactor_server:conn_opened(Slot);
count_listener(closed, #state{listener = Slot}) ->
    py_reactor_server:conn_closed(Slot);
count_listener(undone, #state{listener = Slot}) ->
    py_reactor_server:conn_undone(Slot);
count_listener(lost, #state{listener = Slot}) ->
    py_reactor_server:conns_lost(Slot).

do_request(Kind, Args, From, State = #state{next_ref = Ref, requests = Requests}) ->
    Request = list_to_tuple([Kind, Ref | Args]),
    case send_frame(Request, State) of
        ok ->
            {noreply, State#state{next_ref = Ref + 1,
                                  requests = Requests#{Ref => {Kind, From}}}};
        {error, Reason} ->
            {reply, {error, Reason}, State}
    end.

request(Ctx, Kind, Args, Timeout) ->
    %% Checked here, in the caller: a term the port would refuse is refused
    %% at once, without a trip to the context or the port.
    case py_reactor_term:check(list_to_tuple([Kind, 0 | Args])) of
        ok -> safe_call(Ctx, {request, Kind, Args}, Timeout);
        {error, Why} -> {error, {bad_term, Why}}
    end.

%% A request whose text arguments ({Name, Value}) become binaries; bad
%% arguments are answered without calling the context.
checked_request(Ctx, Kind, TextArgs, OtherArgs, Timeout) ->
    case py_reactor_opts:check_args([{ctx, Ctx}, {timeout, Timeout} | TextArgs]) of
        ok ->
            Texts = [Bin || {Name, Value} <- TextArgs,
                            {ok, Bin} <- [py_reactor_opts:text(Name, Value)]],
            request(Ctx, Kind, Texts ++ OtherArgs, Timeout);
        {error, Reason} ->
            {error, Reason}
    end.

safe_call(Ctx, Request, Timeout) ->
    try
        gen_server:call(Ctx, Request, Timeout)
    catch
        exit:{timeout, {gen_server, call, _}} ->
            {error, timeout};
        exit:{noproc, {gen_server, call, _}} ->
            {error, no_reactor_context};
        exit:{{nodedown, _}, {gen_server, call, _}} ->
            {error, no_reactor_context};
        exit:{Reason, {gen_server, call, _}} ->
            {error, {context_exited, Reason}}
    end.

reply_request(stats, From, {ok, PortStats}, State) when is_map(PortStats) ->
    gen_server:reply(From, {ok, py_reactor_stats:merge(PortStats, own_stats(State))});
reply_request(Kind, From, ok, _State) when Kind =:= exec; Kind =:= listen_control ->
    gen_server:reply(From, ok);
reply_request(Kind, From, {ok, Value}, _State) when Kind =:= eval; Kind =:= call ->
    gen_server:reply(From, {ok, Value});
reply_request(_Kind, From, {error, Reason}, _State) ->
    gen_server:reply(From, {error, Reason});
reply_request(Kind, From, Result, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: bad reply to ~0p: ~0p", [State#state.id, Kind, Result]),
    gen_server:reply(From, {error, {bad_reply, Result}}).

%% The counts the context keeps itself, for stats/2.
own_stats(#state{id = Id, mode = Mode, os_pid = OsPid, conns = Conns, total = Total,
                 refused = Refused, max_connections = Max}) ->
    #{id => Id,
      mode => Mode,
      os_pid => OsPid,
      max_connections => Max,
      active_connections => map_size(Conns),
      total_connections => Total,
      refused_handoffs => Refused}.

send_frame(Term, #state{port = Port, max_frame = MaxFrame}) ->
    py_reactor_frame:send(Port, Term, MaxFrame).

%% The answer to a Python request (py_reactor_vm); one too large for a
%% frame is answered with an error.
send_vm_reply(Id, Result, State) ->
    case send_frame({vm_reply, Id, py_reactor_vm:sendable(Result)}, State) of
        ok ->
            ok;
        {error, {bad_term, Why}} ->
            Text = iolist_to_binary(io_lib:format("the result cannot be sent: ~0p", [Why])),
            _ = send_frame({vm_reply, Id, {error, {unconvertible, Text}}}, State),
            ok;
        {error, _PortGone} ->
            ok
    end.

%% Internal: frames from the port.

handle_frame(Frame, State) ->
    case py_reactor_frame:decode(Frame) of
        {ok, Term} ->
            handle_term(Term, State);
        error ->
            ?LOG_ERROR("py_reactor_context ~0p: undecodable frame from the port: ~0P",
                       [State#state.id, Frame, 20]),
            State
    end.

handle_term({reply, Ref, Result}, State = #state{requests = Requests}) ->
    case maps:take(Ref, Requests) of
        {{Kind, From}, Requests1} ->
            reply_request(Kind, From, Result, State),
            State#state{requests = Requests1};
        error ->
            ?LOG_ERROR("py_reactor_context ~0p: reply to an unknown request ~0p: ~0P",
                       [State#state.id, Ref, Result, 30]),
            State
    end;
handle_term({closed, ConnId, Reason}, State = #state{conns = Conns}) ->
    case maps:take(ConnId, Conns) of
        {true, Conns1} ->
            ok = count_listener(closed, State),
            ok = py_reactor_log:closed(State#state.id, ConnId, Reason),
            State#state{conns = Conns1};
        error ->
            ?LOG_ERROR("py_reactor_context ~0p: closed notice for unknown connection ~0p: ~0P",
                       [State#state.id, ConnId, Reason, 30]),
            State
    end;
handle_term({accepted, ConnId, _ClientInfo}, State = #state{conns = Conns, total = Total}) ->
    %% A connection the port accepted itself (listen): counted as a handoff.
    ok = count_listener(opened, State),
    State#state{conns = Conns#{ConnId => true}, total = Total + 1};
handle_term({log, Level, Text}, State = #state{id = Id}) ->
    ok = py_reactor_log:port_line(Id, Level, Text),
    State;
handle_term({send, Pid, Term}, State) when is_pid(Pid) ->
    Pid ! Term,
    State;
handle_term({send, Name, Term}, State) when is_atom(Name) ->
    try Name ! Term of
        _ -> ok
    catch
        error:badarg ->
            ?LOG_WARNING("py_reactor_context ~0p: Python sent a message to ~0p, "
                         "which is not a registered name", [State#state.id, Name])
    end,
    State;
handle_term({vm_request, Id, Request}, State) ->
    case py_reactor_vm:handle(Id, Request, self()) of
        {reply, Result} -> send_vm_reply(Id, Result, State);
        noreply -> ok
    end,
    State;
handle_term({frame_error, Text}, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: the port refused a frame: ~ts", [State#state.id, Text]),
    State;
handle_term({aux_error, Text}, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: auxiliary socket: ~ts", [State#state.id, Text]),
    State;
handle_term(Term, State) ->
    ?LOG_ERROR("py_reactor_context ~0p: unknown frame from the port: ~0P",
               [State#state.id, Term, 30]),
    State.
