"""equilib's internals, shared by its public modules.

The modules here hold public names (``check_positive_int``, ``lecun_normal``, ...) that the
rest of the package imports; they are not part of the user-facing API and may change between
releases. Public modules (``equilib.nn``, ``equilib.functional``, ...) re-export what users need.
"""
