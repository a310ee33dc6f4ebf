%% @doc The `gen_tcp' system of the benchmark: a plain Erlang server, one
%% process per connection, running the same protocol logic as the other
%% systems (see `bench/protocols/bench_logic.py').
%%
%% ```
%% erl -noshell -pa _build/bench/ebin -run bench_gen_tcp_server main http|echo Port
%% '''
%%
%% Listens on 127.0.0.1:`Port' (0 picks a free port), prints
%% `READY <port> <os pid>' and serves until the VM stops. The process that
%% accepts a connection spawns the next acceptor and then serves the
%% connection itself with passive `gen_tcp:recv/2': an echo sends back what
%% it received; the HTTP responder answers every complete request
%% (`\r\n\r\n') of a read with one `gen_tcp:send/2' and keeps an incomplete
%% one for the next read.
-module(bench_gen_tcp_server).

-export([main/1]).

-define(RESPONSE, <<"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n"
                    "Content-Type: text/plain\r\n\r\nHello, world!">>).

-type proto() :: http | echo.

-spec main([string()]) -> no_return().
main([ProtoArg, PortArg]) ->
    Proto = list_to_existing_atom(ProtoArg),
    true = lists:member(Proto, [http, echo]),
    {ok, LSock} = gen_tcp:listen(list_to_integer(PortArg),
                                 [binary, {active, false}, {reuseaddr, true},
                                  {ip, {127, 0, 0, 1}}, {backlog, 4096},
                                  {nodelay, true}, {buffer, 65536}]),
    {ok, Port} = inet:port(LSock),
    Pattern = binary:compile_pattern(<<"\r\n\r\n">>),
    _ = spawn(fun() -> acceptor(LSock, Proto, Pattern) end),
    io:format("READY ~b ~s~n", [Port, os:getpid()]),
    receive after infinity -> ok end.

-spec acceptor(gen_tcp:socket(), proto(), binary:cp()) -> ok.
acceptor(LSock, Proto, Pattern) ->
    case gen_tcp:accept(LSock) of
        {ok, Sock} ->
            _ = spawn(fun() -> acceptor(LSock, Proto, Pattern) end),
            serve(Sock, Proto, Pattern, <<>>);
        {error, closed} ->
            ok;
        {error, _} ->
            acceptor(LSock, Proto, Pattern)
    end.

-spec serve(gen_tcp:socket(), proto(), binary:cp(), binary()) -> ok.
serve(Sock, Proto, Pattern, Pending) ->
    case gen_tcp:recv(Sock, 0) of
        {ok, Data} when Proto =:= echo ->
            case gen_tcp:send(Sock, Data) of
                ok -> serve(Sock, Proto, Pattern, Pending);
                {error, _} -> close(Sock)
            end;
        {ok, Data} ->
            Buffer = case Pending of
                <<>> -> Data;
                _ -> <<Pending/binary, Data/binary>>
            end,
            case binary:matches(Buffer, Pattern) of
                [] ->
                    serve(Sock, Proto, Pattern, Buffer);
                Matches ->
                    {Last, 4} = lists:last(Matches),
                    Rest = binary:part(Buffer, Last + 4, byte_size(Buffer) - Last - 4),
                    case gen_tcp:send(Sock, binary:copy(?RESPONSE, length(Matches))) of
                        ok -> serve(Sock, Proto, Pattern, Rest);
                        {error, _} -> close(Sock)
                    end
            end;
        {error, _} ->
            close(Sock)
    end.

close(Sock) ->
    _ = gen_tcp:close(Sock),
    ok.
