%% The `python' option: a context runs in the environment of a Python
%% executable the user names (a virtualenv made here with the real `venv'
%% module), and an interpreter of another minor version is refused.
-module(py_reactor_python_option_SUITE).
-compile([export_all, nowarn_export_all]).

-include_lib("common_test/include/ct.hrl").

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [virtualenv_packages,
     without_the_option,
     other_minor_version,
     not_runnable,
     bad_option].

init_per_suite(Config) ->
    Tmp = string:trim(os:cmd("mktemp -d /tmp/py_reactor_venv.XXXXXX")),
    true = filelib:is_dir(Tmp),
    Venv = filename:join(Tmp, "venv"),
    {0, _} = sh(built_python() ++ " -m venv --without-pip '" ++ Venv ++ "'"),
    Python = filename:join([Venv, "bin", "python"]),
    {0, SitePackages0} = sh("'" ++ Python ++ "' -c 'import sysconfig; print(sysconfig.get_path(\"purelib\"))'"),
    SitePackages = string:trim(SitePackages0),
    %% A package only this environment has, and a .pth file that runs code
    %% when site processes it.
    ok = write_file(filename:join([SitePackages, "venv_only_pkg", "__init__.py"]),
                    "GREETING = 'from the virtualenv'\n"),
    ok = write_file(filename:join(SitePackages, "venv_only.pth"),
                    "import sys; sys.venv_only_pth_ran = True\n"),
    [{tmp, Tmp}, {venv, Venv}, {venv_python, Python}, {site_packages, SitePackages} | Config].

end_per_suite(Config) ->
    _ = os:cmd("rm -rf '" ++ ?config(tmp, Config) ++ "'"),
    ok.

%% setup_code imports the package of the virtualenv; the interpreter has
%% the virtualenv's prefix, executable and site-packages, ran its .pth
%% file, and does not see the base interpreter's site-packages (the
%% environment was made without system site packages).
virtualenv_packages(Config) ->
    Venv = ?config(venv, Config),
    {ok, Ctx} = py_reactor_context:start_link(venv, worker, py_reactor_test_lib:ctx_opts("Echo", #{
        python => ?config(venv_python, Config),
        setup_code => [<<"import venv_only_pkg\n">>, py_reactor_test_lib:setup_code("Echo")]})),
    {ok, <<"from the virtualenv">>} = py_reactor_context:eval(Ctx, <<"venv_only_pkg.GREETING">>),
    VenvBin = list_to_binary(Venv),
    {ok, VenvBin} = py_reactor_context:eval(Ctx, <<"__import__('sys').prefix">>),
    PythonBin = list_to_binary(?config(venv_python, Config)),
    {ok, PythonBin} = py_reactor_context:eval(Ctx, <<"__import__('sys').executable">>),
    {ok, true} = py_reactor_context:eval(Ctx, <<"__import__('sys').venv_only_pth_ran">>),
    {ok, Path} = py_reactor_context:eval(Ctx, <<"__import__('sys').path">>),
    true = lists:member(list_to_binary(?config(site_packages, Config)), Path),
    BaseSite = base_site_packages(),
    false = lists:member(BaseSite, Path),
    %% And it serves connections as any context does.
    {LSock, _} = py_reactor_test_lib:listen(),
    {Client, Server} = py_reactor_test_lib:conn_pair(LSock),
    ok = py_reactor_context:handoff_socket(Ctx, Server, #{}),
    ok = py_reactor_test_lib:echo(Client, <<"echoed by the virtualenv's context">>),
    ok = gen_tcp:close(Client),
    ok = py_reactor_context:stop(Ctx),
    ok = gen_tcp:close(LSock).

%% Without the option nothing changes: the built interpreter, its prefix
%% and its site-packages; the virtualenv's package is not importable.
without_the_option(_Config) ->
    {ok, Ctx} = py_reactor_context:start_link(plain, worker, #{}),
    {ok, Prefix} = py_reactor_context:eval(Ctx, <<"__import__('sys').prefix">>),
    {ok, BasePrefix} = py_reactor_context:eval(Ctx, <<"__import__('sys').base_prefix">>),
    Prefix = BasePrefix,
    {ok, Path} = py_reactor_context:eval(Ctx, <<"__import__('sys').path">>),
    true = lists:member(base_site_packages(), Path),
    {error, {python, <<"ModuleNotFoundError">>, _, _}} =
        py_reactor_context:exec(Ctx, <<"import venv_only_pkg\n">>),
    ok = py_reactor_context:stop(Ctx).

%% A Python of another minor version than the port's: an error from
%% start_link, no crash, no port left behind.
other_minor_version(_Config) ->
    process_flag(trap_exit, true),
    Built = built_version(),
    {Other, Found} = other_python(Built),
    Before = py_reactor_test_lib:port_os_pids(),
    {error, {python_version_mismatch, Built, Found}} =
        py_reactor_context:start_link(other, worker, #{python => Other}),
    Before = py_reactor_test_lib:port_os_pids(),
    %% Under the application's supervisor too.
    {ok, _} = application:ensure_all_started(py_reactor),
    {error, {python_version_mismatch, Built, Found}} =
        py_reactor_sup:start_context(other, worker, #{python => Other}),
    ok = application:stop(py_reactor).

not_runnable(Config) ->
    Missing = filename:join(?config(tmp, Config), "no/such/python"),
    {error, {python_not_runnable, MissingBin, _Text}} =
        py_reactor_context:start_link(missing, worker, #{python => Missing}),
    MissingBin = list_to_binary(Missing).

bad_option(_Config) ->
    {error, {bad_option, {python, 42}}} =
        py_reactor_context:start_link(bad, worker, #{python => 42}),
    {error, {bad_option, {python, "no-such-python-on-path"}}} =
        py_reactor_context:start_link(bad, worker, #{python => "no-such-python-on-path"}).

%% Helpers.

%% The interpreter the port was built against, asked from the port itself.
built_python() ->
    {0, Out} = py_reactor_test_lib:port_cli(["python", "-c", "import sys; print(sys.executable)"]),
    binary_to_list(string:trim(Out)).

built_version() ->
    {0, Out} = py_reactor_test_lib:port_cli(["python", "-c", "import sys; print(*sys.version_info[:2])"]),
    [Major, Minor] = string:lexemes(string:trim(Out), " "),
    {binary_to_integer(Major), binary_to_integer(Minor)}.

base_site_packages() ->
    {0, Out} = py_reactor_test_lib:port_cli(
                 ["python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]),
    string:trim(Out).

%% A CPython 3 of another minor version than Built, from PATH or pyenv.
other_python(Built) ->
    Pyenv = filelib:wildcard(filename:join(os:getenv("HOME", "/root"),
                                           ".pyenv/versions/3.*/bin/python3")),
    OnPath = [P || N <- ["python3.10", "python3.11", "python3.12", "python3.13"],
                   P <- [os:find_executable(N)], P =/= false],
    Candidates = [{P, version_of(P)} || P <- OnPath ++ Pyenv],
    case [{P, V} || {P, V} <- Candidates, V =/= Built, V =/= error] of
        [First | _] -> First;
        [] -> ct:fail({no_python_of_another_minor_version, Candidates})
    end.

version_of(Python) ->
    case sh("'" ++ Python ++ "' -I -S -c 'import sys; print(*sys.version_info[:2])'") of
        {0, Out} ->
            [Major, Minor] = string:lexemes(string:trim(Out), " "),
            {list_to_integer(Major), list_to_integer(Minor)};
        _ ->
            error
    end.

sh(Command) ->
    Port = open_port({spawn, Command}, [exit_status, stderr_to_stdout, hide]),
    collect(Port, []).

collect(Port, Acc) ->
    receive
        {Port, {data, Data}} -> collect(Port, Acc ++ Data);
        {Port, {exit_status, Status}} -> {Status, Acc}
    after 120000 ->
        ct:fail({command_timeout, Acc})
    end.

write_file(Path, Content) ->
    ok = filelib:ensure_dir(Path),
    file:write_file(Path, Content).
