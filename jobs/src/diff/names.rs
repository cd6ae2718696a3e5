//! Metric and subset names numbered in the order first seen, so that a
//! document keeps small numbers rather than strings.

use std::collections::HashMap;

#[derive(Default)]
pub(super) struct Names {
    pub list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Names {
    /// The number of `name`, given one when it is new.
    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.index.get(name) {
            return id;
        }
        let id = self.list.len() as u32;
        self.list.push(name.to_string());
        self.index.insert(name.to_string(), id);
        id
    }

    pub fn name(&self, id: u32) -> &str {
        &self.list[id as usize]
    }
}
