//! docker save / load / import. (Being written.)
use std::io::{Read, Write};

use super::reference::Reference;
use super::ImageService;
use crate::error::{EngineError, EngineResult};

pub struct SavePlan;
pub struct Changes;
pub fn parse_changes(_c: &[String]) -> EngineResult<Changes> {
    Ok(Changes)
}
impl ImageService {
    pub async fn save_plan(&self, _names: &[String]) -> EngineResult<SavePlan> {
        Err(EngineError::NotImplemented("save".into()))
    }
    pub fn write_save(&self, _plan: &SavePlan, _w: &mut dyn Write) -> EngineResult<()> {
        Err(EngineError::NotImplemented("save".into()))
    }
    pub async fn load(&self, _r: Box<dyn Read + Send>) -> EngineResult<Vec<String>> {
        Err(EngineError::NotImplemented("load".into()))
    }
    pub async fn import(
        &self,
        _r: Box<dyn Read + Send>,
        _t: Option<Reference>,
        _c: Changes,
        _m: String,
    ) -> EngineResult<String> {
        Err(EngineError::NotImplemented("import".into()))
    }
}
