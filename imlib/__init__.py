"""imlib"""
