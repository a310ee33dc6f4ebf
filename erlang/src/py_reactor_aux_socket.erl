%% @doc The VM's end of a port's auxiliary socket: the Unix stream socket
%% over which descriptors are passed to the port (`SCM_RIGHTS').
%%
%% The port creates the socket in a private directory and names its path in
%% its `hello'; the context connects with OTP's `socket' module. Each
%% descriptor goes with an 8-byte big-endian tag, the id under which a frame
%% (a `handoff', a `listen' or a `call''s descriptor arguments) names it,
%% so that the port pairs the two whichever arrives first.
-module(py_reactor_aux_socket).

-export([connect/1, send_fd/3, close/1]).

%% Milliseconds a send of a descriptor may wait for room in the socket.
-define(SEND_TIMEOUT, 5000).

%% @doc Connects to the port's auxiliary socket at `Path'. Errors:
%% `{error, {aux_connect, Reason}}' (`Reason' from `socket:open/3' or
%% `socket:connect/2').
-spec connect(file:filename_all()) -> {ok, socket:socket()} | {error, {aux_connect, term()}}.
connect(Path) ->
    case socket:open(local, stream, default) of
        {ok, Sock} ->
            case socket:connect(Sock, #{family => local, path => Path}) of
                ok ->
                    {ok, Sock};
                {error, Reason} ->
                    _ = socket:close(Sock),
                    {error, {aux_connect, Reason}}
            end;
        {error, Reason} ->
            {error, {aux_connect, Reason}}
    end.

%% @doc Passes a duplicate of the VM's descriptor `Fd' to the port, tagged
%% with `Id' (unsigned, 64 bits). Once it returns `ok' the kernel holds the
%% port's copy and the caller may close its own. Errors: `{error, Reason}'
%% from `socket:sendmsg/3' or `socket:send/3' (`ebadf' for a closed
%% descriptor, `timeout' after 5 seconds without room, ...).
-spec send_fd(socket:socket(), non_neg_integer(), non_neg_integer()) -> ok | {error, term()}.
send_fd(Sock, Id, Fd) ->
    Msg = #{iov => [<<Id:64/big>>],
            ctrl => [#{level => socket, type => rights, data => <<Fd:32/native>>}]},
    case socket:sendmsg(Sock, Msg, ?SEND_TIMEOUT) of
        ok ->
            ok;
        {ok, Rest} ->
            %% Part of the id went with the descriptor; send the rest.
            socket:send(Sock, Rest, ?SEND_TIMEOUT);
        {error, {Reason, _Rest}} ->
            {error, Reason};
        {error, Reason} ->
            {error, Reason}
    end.

%% @doc Closes the socket, if there is one.
-spec close(socket:socket() | undefined) -> ok.
close(undefined) ->
    ok;
close(Sock) ->
    _ = socket:close(Sock),
    ok.
