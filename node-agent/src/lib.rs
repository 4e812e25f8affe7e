//! The Drover node agent: registers its Node, watches the Tasks bound to it and runs them.
