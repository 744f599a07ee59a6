//! Deploy-time checks of a module's imports outside `rime`: which WASI
//! preview 1 functions Rime grants, and what to tell the user about
//! everything else (what the module is, what to build instead).

use rime_abi::{EXPORT_INVOKE, IMPORT_MODULE};
use wasmtime::{Engine, Extern, ExternType, FuncType, ImportType, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};

/// The import module of WASI preview 1.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// WASI preview 0's import module (wasmtime-wasi no longer links it).
const PREVIEW0_MODULE: &str = "wasi_unstable";

/// The functions of WASI preview 1 Rime links, wasmtime-wasi's own
/// implementations against a capability-less context (`docs/abi.md`).
/// Those touching files or directories are linked and fail at run time
/// (no directory is preopened), as they would in a sandbox without files:
/// libc and Rust's std call some of them at start-up and cope.
const GRANTED: [&str; 42] = [
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "fd_advise",
    "fd_allocate",
    "fd_close",
    "fd_datasync",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "fd_pread",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "fd_pwrite",
    "fd_read",
    "fd_readdir",
    "fd_renumber",
    "fd_seek",
    "fd_sync",
    "fd_tell",
    "fd_write",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
    "poll_oneoff",
    "proc_exit",
    "proc_raise",
    "sched_yield",
    "random_get",
];

/// The preview 1 functions Rime refuses at deploy: a faaslet has no
/// network (its input, output and state come through `rime`).
const REFUSED: [&str; 4] = ["sock_accept", "sock_recv", "sock_send", "sock_shutdown"];

/// The types wasmtime-wasi gives the preview 1 functions, to tell a
/// module that imports one with another type what both are.
pub(crate) struct Signatures {
    linker: Linker<WasiP1Ctx>,
    store: Store<WasiP1Ctx>,
}

impl Signatures {
    pub(crate) fn new(engine: &Engine) -> Result<Signatures, String> {
        let mut linker = Linker::new(engine);
        p1::add_to_linker_sync(&mut linker, |c| c).map_err(|e| format!("{e:#}"))?;
        let store = Store::new(engine, WasiCtxBuilder::new().build_p1());
        Ok(Signatures { linker, store })
    }

    fn get(&mut self, name: &str) -> Option<FuncType> {
        match self.linker.get(&mut self.store, MODULE, name).ok()? {
            Extern::Func(f) => Some(f.ty(&self.store)),
            _ => None,
        }
    }
}

/// Checks one import from a module other than `rime`: `Ok` for a granted
/// WASI preview 1 function of the right type, else the message for the
/// user. `signatures` is built at the first WASI import (deploy-time only).
pub(crate) fn check_import(
    imp: &ImportType<'_>,
    engine: &Engine,
    signatures: &mut Option<Signatures>,
) -> Result<(), String> {
    let (module, name) = (imp.module(), imp.name());
    let ExternType::Func(ty) = imp.ty() else {
        return Err(format!(
            "the module imports `{module}.{name}`, which is not a function; a faaslet \
             defines and exports its own memory and imports only functions \
             (link without --import-memory)"
        ));
    };
    match module {
        MODULE if GRANTED.contains(&name) => {
            let sigs = match signatures {
                Some(s) => s,
                None => signatures.insert(Signatures::new(engine)?),
            };
            match sigs.get(name) {
                Some(want) if want.to_string() == ty.to_string() => Ok(()),
                Some(want) => Err(format!(
                    "the module imports `{MODULE}.{name}` with type {ty}; WASI preview 1's \
                     is {want}"
                )),
                None => Err(format!("`{MODULE}.{name}` is not linked (a Rime bug)")),
            }
        }
        MODULE if REFUSED.contains(&name) => Err(format!(
            "this is a WASI preview 1 module importing `{MODULE}.{name}`, which Rime \
             does not grant: a faaslet has no sockets (its input, output and state \
             come through the `rime` imports); build it without networking"
        )),
        MODULE => Err(format!(
            "the module imports `{MODULE}.{name}`, which is not a WASI preview 1 \
             function Rime knows"
        )),
        PREVIEW0_MODULE => Err(format!(
            "this is a WASI preview 0 module (it imports `{PREVIEW0_MODULE}.{name}`), \
             which Rime does not run; build it for `wasm32-wasip1`"
        )),
        "env" => Err(format!(
            "the module imports `env.{name}`: a symbol the build left undefined; \
             a faaslet may import only from `{IMPORT_MODULE}` (host ABI v1) and \
             `{MODULE}` (WASI preview 1): define `{name}` or link the library \
             that does"
        )),
        _ => Err(format!(
            "the module imports `{module}.{name}`; a faaslet may import only from \
             `{IMPORT_MODULE}` (host ABI v1) and `{MODULE}` (WASI preview 1)"
        )),
    }
}

/// For a module without `rime_invoke` that is a WASI command (a program
/// with `main`): what to build instead.
pub(crate) fn command_module_hint(module: &Module) -> Option<String> {
    module.get_export("_start")?;
    Some(format!(
        "this is a WASI command module (it exports `_start`, a program's `main`), \
         not a faaslet: build a library that exports `{EXPORT_INVOKE}` (a Rust \
         `cdylib`, or C with `-mexec-model=reactor`; see guests/)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The granted and refused lists name every preview 1 function
    /// wasmtime-wasi links, each once: none is left undecided.
    #[test]
    fn every_preview1_function_is_granted_or_refused() {
        let engine = Engine::default();
        let mut sigs = Signatures::new(&engine).unwrap();
        let mut linked: Vec<String> = sigs
            .linker
            .iter(&mut sigs.store)
            .filter(|(m, _, _)| *m == MODULE)
            .map(|(_, name, _)| name.to_string())
            .collect();
        linked.sort();
        let mut ours: Vec<String> = GRANTED
            .iter()
            .chain(&REFUSED)
            .map(|s| s.to_string())
            .collect();
        ours.sort();
        assert_eq!(ours, linked);
    }
}
