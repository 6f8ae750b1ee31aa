//! Compiled code of either kind a node runs: a WASI preview 1 core module or a WASI 0.2
//! component ([`Code`]), and the same linked against WASI, ready to instantiate ([`Program`]).

use std::sync::Arc;

use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{Engine, InstancePre, Linker, Module};
use wasmtime_wasi::p2::bindings::sync::CommandPre;

use crate::state::AttemptState;

/// A module's or a component's compiled code.
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

impl Code {
    /// Compiles `wasm`, a component if its header says so and a core module otherwise.
    pub(crate) fn compile(engine: &Engine, wasm: &[u8]) -> Result<Code, String> {
        let code = if wasmparser::Parser::is_component(wasm) {
            Component::new(engine, wasm).map(Code::Component)
        } else {
            Module::new(engine, wasm).map(Code::Module)
        };
        code.map_err(|error| format!("does not compile: {error:#}"))
    }

    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Code::Module(module) => module.serialize(),
            Code::Component(component) => component.serialize(),
        }
    }

    /// Links the code against WASI: a module's imports, or a component's imports and its
    /// `wasi:cli/run` export.
    pub(crate) fn link(
        &self,
        modules: &Linker<AttemptState>,
        components: &ComponentLinker<AttemptState>,
    ) -> Result<Program, String> {
        let cannot_link = |error: wasmtime::Error| format!("cannot link: {error:#}");
        match self {
            Code::Module(module) => {
                let pre = modules.instantiate_pre(module).map_err(cannot_link)?;
                Ok(Program::Module(Arc::new(pre)))
            }
            Code::Component(component) => {
                let pre = components.instantiate_pre(component).map_err(cannot_link)?;
                let command = CommandPre::new(pre).map_err(|error| {
                    format!(
                        "the component is not a WASI command (it exports no wasi:cli/run): \
                         {error:#}; build it for wasm32-wasip2 as a program with a main"
                    )
                })?;
                Ok(Program::Component(Arc::new(command)))
            }
        }
    }
}

/// Code linked against WASI: instantiating it is cheap.
#[derive(Clone)]
pub(crate) enum Program {
    Module(Arc<InstancePre<AttemptState>>),
    Component(Arc<CommandPre<AttemptState>>),
}
