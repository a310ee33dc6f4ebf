%% @doc Keeps the descriptors made by {@link py:dup_fd/1} until they are
%% handed off.
%%
%% A descriptor can only be duplicated in the VM by opening it with OTP's
%% `socket' module (`socket:open(Fd, #{dup => true})'), and such a socket
%% lives as long as the process that owns it. This process owns them: each
%% stays open, and its number valid, until {@link py_reactor_context:handoff/3}
%% has passed it to a port, and is then closed. The descriptor belongs to the
%% reactor once handed off, as in the original project, so code that never
%% closes its duplicate leaks nothing. A duplicate never handed off stays
%% open until {@link release/1} closes it or the application stops.
%%
%% The numbers kept are in a public ETS table of the same name, so that a
%% handoff of a descriptor this process does not hold costs one lookup and
%% no message.
-module(py_reactor_dup).
-behaviour(gen_server).

-export([start_link/0, dup/1, handed_off/1, release/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(TABLE, ?MODULE).

%% @doc Starts the keeper, registered as `py_reactor_dup' (a child of
%% {@link py_reactor_sup}).
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    gen_server:start_link({local, ?MODULE}, ?MODULE, [], []).

%% @doc Duplicates the socket descriptor `Fd' and keeps the copy open.
%%
%% Returns `{ok, NewFd}', or `{error, Reason}': `not_started' when the
%% `py_reactor' application is not running, the `socket:open/2' error
%% otherwise (`ebadf' for a closed descriptor, `enotsock' for one that is not
%% a socket, for instance).
-spec dup(non_neg_integer()) -> {ok, non_neg_integer()} | {error, term()}.
dup(Fd) when is_integer(Fd), Fd >= 0 ->
    try
        gen_server:call(?MODULE, {dup, Fd}, infinity)
    catch
        exit:{noproc, _} -> {error, not_started}
    end.

%% @doc Called after `Fd' was handed off to a port: closes the VM's copy
%% when it is one made by {@link dup/1}; does nothing otherwise.
-spec handed_off(non_neg_integer()) -> ok.
handed_off(Fd) ->
    case is_kept(Fd) of
        true -> release(Fd);
        false -> ok
    end.

%% @doc Closes the duplicate `Fd' made by {@link dup/1}; does nothing for
%% another descriptor.
-spec release(non_neg_integer()) -> ok.
release(Fd) ->
    try
        gen_server:call(?MODULE, {release, Fd}, infinity)
    catch
        exit:{noproc, _} -> ok
    end.

is_kept(Fd) ->
    try
        ets:member(?TABLE, Fd)
    catch
        error:badarg -> false
    end.

%% gen_server.

%% @private
-spec init([]) -> {ok, #{}}.
init([]) ->
    ?TABLE = ets:new(?TABLE, [named_table, protected, set, {read_concurrency, true}]),
    {ok, #{}}.

%% @private
-spec handle_call(term(), gen_server:from(), map()) -> {reply, term(), map()}.
handle_call({dup, Fd}, _From, Kept) ->
    case socket:open(Fd, #{dup => true}) of
        {ok, Socket} ->
            {ok, NewFd} = socket:getopt(Socket, otp, fd),
            true = ets:insert(?TABLE, {NewFd}),
            {reply, {ok, NewFd}, Kept#{NewFd => Socket}};
        {error, Reason} ->
            {reply, {error, Reason}, Kept}
    end;
handle_call({release, Fd}, _From, Kept) ->
    case maps:take(Fd, Kept) of
        {Socket, Kept1} ->
            true = ets:delete(?TABLE, Fd),
            _ = socket:close(Socket),
            {reply, ok, Kept1};
        error ->
            {reply, ok, Kept}
    end;
handle_call(_Request, _From, Kept) ->
    {reply, {error, unknown_request}, Kept}.

%% @private
-spec handle_cast(term(), map()) -> {noreply, map()}.
handle_cast(_Msg, Kept) ->
    {noreply, Kept}.

%% @private
-spec handle_info(term(), map()) -> {noreply, map()}.
handle_info(_Info, Kept) ->
    {noreply, Kept}.

%% @private
-spec terminate(term(), map()) -> ok.
terminate(_Reason, Kept) ->
    _ = [socket:close(Socket) || Socket <- maps:values(Kept)],
    ok.
